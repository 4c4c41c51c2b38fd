"""The Flowroute simulator: a local HTTP stand-in for the v2.1 messaging API, behind the
`simulator` and `demo` commands and the test suite."""
