from coupon.main import main

main()
