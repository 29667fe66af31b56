from order.relay.main import main

main()
