"""`edgecls data check`: audit a dataset (or a run's data and split) for near-duplicates, leakage across
the split, label mistakes, outliers and odd image files; TF-free, so it runs on a device install too.

`duplicates` (also the grouping `edgecls train` keeps on one side of its split), `labels` (out-of-fold
label-issue candidates), `outliers`, `facts` (image files and class balance), `leakage` (a run's
parts), `sheets` (contact sheets, Pillow), `report` (terminal summary, JSON, Markdown, --review
links), `job` (the check).
"""
