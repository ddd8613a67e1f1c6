from publish.cli.main import main

main()
