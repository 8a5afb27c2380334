from sb3_acktr.zoo import main

main()
