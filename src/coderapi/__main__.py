from coderapi.cli import main

main()
