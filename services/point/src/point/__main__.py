from point.main import main

main()
