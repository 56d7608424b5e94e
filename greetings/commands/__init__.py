"""One module per `greetings` subcommand that acts as an end user or renders locally."""
