from edgecls.entry import main

main()
