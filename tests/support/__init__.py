"""Helpers the tests share: the fake ElevenLabs, media checks, the stack tests' kit."""
