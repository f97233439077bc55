from dvsapp.app.cli import main

main()
