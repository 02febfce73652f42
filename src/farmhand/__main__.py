from farmhand.cli import main

main()
