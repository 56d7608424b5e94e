"""No stack: plain functions, real ffmpeg on real media, ElevenLabs' SDK on a local server."""
