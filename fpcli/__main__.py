from fpcli.cli import main

main()
