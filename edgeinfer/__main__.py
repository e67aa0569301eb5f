from edgeinfer.cli import main

main()
