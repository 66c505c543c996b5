from cubicle.cli import main

main()
