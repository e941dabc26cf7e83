# wanmig: the two commands a newcomer types are `sudo make run` and `sudo make test`.
# `make setup` is idempotent: Debian packages, a virtual environment that sees Debian's
# Mininet, the project and its PyPI dependencies, and a running Open vSwitch.

VENV      ?= .venv
PY        := $(VENV)/bin/python
WANMIG    := $(VENV)/bin/wanmig
STAMP     := $(VENV)/.installed
DEB_PKGS  := mininet openvswitch-switch iperf3 ethtool iputils-ping iproute2 procps psmisc \
             python3-venv python3-dev python3-cryptography python3-libnbd \
             busybox-static gcc libc6-dev cpio kmod
# QEMU for the QEMU guests: at least 8. Debian 12's own 7.2 loses pages in every live
# pre-copy of more than one pass under TCG (measured: 36-140 pages of 32768, the guest dead at
# the destination; README, "QEMU guests"); bookworm-backports' 10.0 migrates exactly. On
# bookworm the backports source is added (on the mirror of the machine's own bookworm source)
# and QEMU taken from it. qemu-utils (qemu-nbd, the
# NBD server of shared storage) comes from the same place, at the same version: all of
# QEMU_PKGS are (re)installed together whenever one is missing, older or of another version.
QEMU_PKGS := qemu-system-x86 qemu-utils
QEMU_MIN  := 1:8
BACKPORTS := /etc/apt/sources.list.d/wanmig-bookworm-backports.list

.PHONY: setup debs run test unit bench lint clean check ovs guest-image delayline

setup: debs $(STAMP) delayline ovs guest-image

# Always checked (a dpkg query is cheap), installed only when something is missing.
debs:
	@command -v apt-get >/dev/null || { echo "make setup: apt-get not found; install by hand: $(DEB_PKGS) $(QEMU_PKGS)"; exit 1; }
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@vs=$$(for p in $(QEMU_PKGS); do \
	  dpkg-query -W -f='$${Status} $${Version}\n' $$p 2>/dev/null | sed -n 's/^install ok installed //p'; \
	 done); \
	n=$$(echo "$$vs" | grep -c .); v=$$(echo "$$vs" | sort -u); \
	if [ "$$n" -eq $(words $(QEMU_PKGS)) ] && [ "$$(echo "$$v" | wc -l)" -eq 1 ] \
	   && dpkg --compare-versions "$$v" ge "$(QEMU_MIN)"; then :; \
	elif grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then \
	  echo "QEMU: $(QEMU_PKGS) wanted at one version >= $(QEMU_MIN), installed:" $${vs:-none}"; installing them from bookworm-backports"; \
	  mirror=$$(apt-get indextargets --format '$$(REPO_URI) $$(RELEASE)' 2>/dev/null \
	    | awk '$$2 == "bookworm" { print $$1; exit }'); \
	  if [ -z "$$mirror" ]; then \
	    echo "make setup: no Debian bookworm source is configured in apt (apt-get indextargets); bookworm-backports is taken from the same mirror"; exit 1; \
	  fi; \
	  echo "deb $$mirror bookworm-backports main" > $(BACKPORTS); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends -t bookworm-backports $(QEMU_PKGS); \
	else \
	  if [ "$$n" -lt $(words $(QEMU_PKGS)) ]; then \
	    echo "installing Debian packages:" $(QEMU_PKGS); \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(QEMU_PKGS); \
	  fi; \
	  v=$$(dpkg-query -W -f='$${Version}' qemu-system-x86 2>/dev/null); \
	  dpkg --compare-versions "$$v" ge "$(QEMU_MIN)" || \
	    echo "make setup: QEMU $$v is older than $(QEMU_MIN) and this is not Debian 12: live QEMU migrations will be refused (README)"; \
	fi

# Debian's /usr/bin/python3 is the interpreter Mininet is installed for.
$(STAMP): setup.cfg setup.py
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The QEMU guest image (a Debian kernel, busybox, the agent) in /var/cache/wanmig/guest:
# built once, rebuilt only when an input changes (a few apt queries when up to date).
guest-image: debs $(STAMP)
	$(PY) -m migrator.qemu.image build

# The compiled delay line (topologies/relay/*.c), named by its sources' digest, in the venv.
delayline: debs $(STAMP)
	@$(PY) -m topologies.delaybin

# Open vSwitch running, with TCP segmentation offload in its userspace datapath (read when
# ovs-vswitchd starts: restarted once if the running one lacks it, never under a live network).
ovs: debs $(STAMP)
	@ovs-vsctl --timeout=5 show >/dev/null 2>&1 || /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random
	@ovs-vsctl --timeout=5 show >/dev/null
	@$(PY) -m topologies.ovstso ensure

# The quickstart experiment (experiments/quickstart.yaml, also the built-in default).
run: setup
	$(WANMIG) run experiments/quickstart.yaml

test: setup
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest tests/unit tests/processes

# Every benchmark in turn; each writes results/bench/<time>-<name>/ and prints its table.
bench: setup
	$(PY) -m experiments.bench

lint: setup
	$(VENV)/bin/ruff check .

check: setup
	$(WANMIG) check

clean:
	@test -x $(WANMIG) && $(WANMIG) clean || true
