"""The harness self-test: a catalogue of broken servers, and false-alarm runs on a correct one."""
