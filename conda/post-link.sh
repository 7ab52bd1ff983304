#!/bin/sh
# conda runs this after linking the package; it must not prompt or print to
# the terminal: what it writes to $PREFIX/.messages.txt, conda shows at the end.
cat >> "$PREFIX/.messages.txt" <<MESSAGE

ssd is installed in $PREFIX.
To run it as a system service for the users of this host, run once:

    sudo "$PREFIX/bin/ssd" install --system

(Or, for yourself only and without root: "$PREFIX/bin/ssd" install --user)
MESSAGE
