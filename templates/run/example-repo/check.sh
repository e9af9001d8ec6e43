#!/bin/sh
# The example tasks' check: passes when the agent left a CHANGES.md behind.
test -s CHANGES.md
