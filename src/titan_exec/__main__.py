from titan_exec.cli.main import main

main()
