from rmr1_plugins.testing import main

if __name__ == "__main__":
    main()
