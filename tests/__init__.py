"""The test suite: packages shaped like ``fastevalcb/`` (``tests/tables/test_staging.py`` tests
``fastevalcb/tables/staging.py``), shared builders in :mod:`tests.helpers`."""
