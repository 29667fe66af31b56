from order.main import main

main()
