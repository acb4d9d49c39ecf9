"""`edgecls search`: the most accurate model within a device's latency (and size) budget — backbone heads,
from-scratch CNN shapes and distilled students, each timed on the target (edgecls.search.job)."""
