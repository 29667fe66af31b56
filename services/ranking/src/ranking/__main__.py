from ranking.main import main

main()
