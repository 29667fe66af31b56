from product.main import main

main()
