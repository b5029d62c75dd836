#!/usr/bin/env bash
# Browser tests drive Debian's chromium (playwright cannot download its own browser here).
# Install it when it is missing and we are allowed to; otherwise the e2e tests say why they skip.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        && exit 0
    echo "warning: could not install chromium; browser tests will be skipped" >&2
else
    echo "note: /usr/bin/chromium is missing; install it (sudo apt-get install chromium) to run the browser tests" >&2
fi
exit 0
