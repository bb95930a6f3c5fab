from digest.cli.main import main

# Guarded: reader processes are started with "spawn" and import this module again.
if __name__ == "__main__":
    main()
