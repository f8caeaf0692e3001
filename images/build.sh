#!/usr/bin/env bash
# Build the Portier appliance image: a Debian bookworm arm64 root (Raspberry Pi
# firmware and kernel from Debian's own packages) with Portier layered on top, a
# read-only root, a persistent data partition, the hardened units enabled and the
# hardware watchdog on. Written without loop devices or mounts (see
# images/assemble.py; the only mount is /proc inside the chroot while packages
# install), with a .bmap and .sha256 for `appliance flash`.
#
#   sudo images/build.sh [--out DIR] [--mirror URL] [--suite bookworm] [--keep-root]
#   sudo images/build.sh --from-image raspios-bookworm-arm64-lite.img [--out DIR]
#   sudo images/build.sh --reuse-root DIR   # layer again on a root kept by --keep-root
#
# Needs (Debian packages): debootstrap qemu-user-static binfmt-support mtools
# dosfstools fdisk e2fsprogs bmap-tools systemd, and the project's .venv
# (tools/dev sets it up). Runs as root: debootstrap and chroot need it.
#
# --from-image layers Portier on an existing Raspberry Pi OS Lite (arm64) image
# instead of debootstrapping Debian: its partitions are extracted without mounting
# (mcopy, debugfs rdump), Portier is added the same way, and the result is
# reassembled. Raspberry Pi OS's archive (for python3-picamera2) must then be
# reachable from the build machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$here/build/image"
mirror="http://deb.debian.org/debian"
suite="bookworm"
keep_root=0
from_image=""
reuse_root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        --suite) suite="$2"; shift 2 ;;
        --keep-root) keep_root=1; shift ;;
        --from-image) from_image="$2"; shift 2 ;;
        --reuse-root) reuse_root="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

# Every line says how long the build has been running: the stage figures in
# docs/installation.md come from these.
log() { printf '\033[1m[build %3dm%02ds]\033[0m %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
py="$here/.venv/bin/python"
[ -x "$py" ] || die "no .venv: run ./tools/dev test once, or create it"
for tool in debootstrap mcopy mkfs.vfat sfdisk mkfs.ext4 debugfs bmaptool systemd-analyze \
            systemd-sysusers systemctl; do
    command -v "$tool" >/dev/null || die "$tool missing (see the header for the Debian packages)"
done

mkdir -p "$out"
work="$(mktemp -d "$out/work.XXXXXX")"
root="${reuse_root:-$work/root}"; boot="$work/boot"; data="$work/data"
mkdir -p "$root" "$boot" "$data"
proc_mounted=0
cleanup() {
    # /proc inside the chroot is the only mount the build makes; no file system of the
    # image is ever mounted.
    [ "$proc_mounted" -eq 1 ] && umount -l "$root/proc"
    # Boot files moved out of a kept root go back, even when the build failed.
    if [ -d "$work/boot-kept" ]; then
        find "$work/boot-kept" -mindepth 1 -maxdepth 1 -exec mv -t "$root/boot/firmware" {} +
    fi
    [ "$keep_root" -eq 1 ] && { log "kept $work"; return; }
    rm -rf "$work"
}
trap cleanup EXIT

enable_arm64_emulation() {
    [ "$(uname -m)" = aarch64 ] && return 0
    command -v qemu-aarch64-static >/dev/null || die "qemu-user-static missing"
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
    # The F (fix binary) flag lets the kernel run the interpreter inside a chroot
    # that does not contain it.
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        || die "qemu-aarch64 binfmt entry lacks the F flag"
}

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root "$@"; }

# The chroot resolves names with the build machine's resolver. Installing
# systemd-resolved replaces /etc/resolv.conf with a link into /run, which is empty in
# a chroot, so the copy is put back before every apt run (the link is restored at
# the end).
host_dns() { rm -f "$root/etc/resolv.conf"; cp /etc/resolv.conf "$root/etc/resolv.conf"; }

apt_in_root() {
    host_dns
    in_root apt-get -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Use-Pty=0 "$@"
}

# --- 1. the base operating system ------------------------------------------------------
enable_arm64_emulation
# Runtime packages: systemd with networkd/resolved/timesyncd, Wi-Fi, Python, the
# libraries Portier's wheels load (zbar, GL/EGL and mtdev for Kivy, libusb for nfcpy).
packages=(systemd-sysv udev dbus systemd-timesyncd systemd-resolved wpasupplicant iproute2
          ca-certificates python3 python3-venv libzbar0 libusb-1.0-0 libgl1 libegl1 libgles2
          libgl1-mesa-dri libmtdev1 kmod)
if [ -n "$reuse_root" ]; then
    [ -x "$root/usr/bin/apt-get" ] || die "$reuse_root: not a root file system"
    log "reusing the base system in $root"
elif [ -z "$from_image" ]; then
    log "debootstrap $suite arm64 from $mirror (first stage)"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --components=main,non-free-firmware "$suite" "$root" "$mirror" >&2
    log "debootstrap second stage (under qemu-aarch64)"
    chroot "$root" /debootstrap/debootstrap --second-stage >&2
    printf 'deb %s %s main non-free-firmware\ndeb %s %s-updates main non-free-firmware\n' \
        "$mirror" "$suite" "$mirror" "$suite" > "$root/etc/apt/sources.list"
else
    [ -f "$from_image" ] || die "$from_image: no such image"
    log "extracting $from_image without mounting"
    "$py" -m images.cli extract "$from_image" --boot "$boot" --root "$root"
fi
# Package scripts need /proc: without it `ischroot` cannot tell it runs in a chroot and
# raspi-firmware's kernel hook then insists on a mounted /boot/firmware.
mount -t proc proc "$root/proc"; proc_mounted=1
cp -a "$here/images/overlay/." "$root/"
mkdir -p "$root/boot/firmware" "$root/data" "$root/etc/portier"
# The initramfs is built once, at the end of this stage. Left to the packages, the
# kernel, firmware and initramfs-tools hooks each rebuild it (three times), and under
# emulation each build takes about ten minutes. dpkg-divert keeps the real
# update-initramfs aside (also when it is installed later) and a no-op stands in.
in_root dpkg-divert --local --rename --add /usr/sbin/update-initramfs >&2
printf '#!/bin/sh\n# Portier image build: initramfs deferred (images/build.sh)\nexit 0\n' \
    > "$root/usr/sbin/update-initramfs"
chmod 0755 "$root/usr/sbin/update-initramfs"
# evdev, sdnotify and pydes come as source only: built in stage 2, then the compiler goes.
build_deps=(python3-dev gcc libc6-dev)
if [ -z "$from_image" ]; then
    # Debian's Raspberry Pi boot firmware and its generic arm64 kernel (Pi 3, 4, 400,
    # CM4); the kernel hook writes config.txt, cmdline.txt, the kernel and DTBs into
    # /boot/firmware, the initramfs hook the initrd.
    packages+=(raspi-firmware linux-image-arm64 firmware-brcm80211)
else
    packages+=(python3-picamera2)
fi
apt_in_root -o Acquire::Retries=5 update >&2
log "installing runtime packages, kernel and firmware (one transaction)"
apt_in_root -o Acquire::Retries=5 install --no-install-recommends "${packages[@]}" \
    "${build_deps[@]}" >&2

# --- 2. Portier ------------------------------------------------------------------------
log "installing Portier into /opt/portier/venv"
# The kiosk's gettext catalogues are compiled here, where Babel is (a dev
# dependency), and ship in the wheel: the image has no Babel.
"$py" -c 'from kiosk.i18n import ensure_compiled; ensure_compiled()' >&2
# The device's own distribution, portier-device (images/devicewheel.py): the device
# packages and commands only. The reference central and the demo never reach the image.
# (Two steps: a failure inside a nested $(...) would not stop the build.)
wheel="$("$py" -m images.devicewheel "$work/wheels")"
wheel="${wheel##*/}"
cp "$here/pyproject.toml" "$work/wheels/"
[ -f "$here/constraints.txt" ] && cp "$here/constraints.txt" "$work/wheels/"
mkdir -p "$root/opt/portier"
rm -rf "$root/opt/portier/wheels"
cp -a "$work/wheels" "$root/opt/portier/wheels"
in_root python3 -m venv --system-site-packages /opt/portier/venv
constraint=()
[ -f "$root/opt/portier/wheels/constraints.txt" ] && constraint=(-c /opt/portier/wheels/constraints.txt)
# pip inside the chroot trusts what the build machine trusts (a site's TLS-inspecting
# proxy, for one): its CA bundle is copied in for this step only.
for ca in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    [ -n "$ca" ] && [ -f "$ca" ] && break
done
cp "$ca" "$root/opt/portier/wheels/build-ca.crt"
host_dns
# A reused root may hold the developers' distribution (`portier`, central and demo
# included) from an older build: it goes first (pip only warns when it is absent).
in_root /opt/portier/venv/bin/pip uninstall -q -y portier >&2
in_root PIP_CERT=/opt/portier/wheels/build-ca.crt /opt/portier/venv/bin/pip install -q \
    --no-cache-dir "${constraint[@]}" "/opt/portier/wheels/$wheel" >&2
# A reused root already has a Portier of the same version, which pip would keep: this
# checkout's wheel replaces it (its dependencies are those just checked).
in_root /opt/portier/venv/bin/pip install -q --no-cache-dir --no-deps --force-reinstall \
    "/opt/portier/wheels/$wheel" >&2
apt_in_root purge --auto-remove "${build_deps[@]}" >&2
# Now the one initramfs: the real update-initramfs comes back and runs for every
# installed kernel; raspi-firmware's post-update hook copies it into /boot/firmware.
rm -f "$root/usr/sbin/update-initramfs"
in_root dpkg-divert --local --rename --remove /usr/sbin/update-initramfs >&2
initrd_current() {
    # True when every installed kernel has its initrd already (a reused root whose
    # kernel did not change): the ten minutes are not spent again.
    local kernel
    for kernel in "$root"/boot/vmlinuz-*; do
        [ -e "$kernel" ] || return 1
        [ -e "$root/boot/initrd.img-${kernel##*/vmlinuz-}" ] || return 1
    done
    ls "$root"/boot/firmware/initrd.img* >/dev/null 2>&1
}
if [ -n "$reuse_root" ] && initrd_current; then
    log "the reused root's initramfs is current: not rebuilt"
elif [ -z "$from_image" ]; then
    log "building the initramfs (once)"
    in_root update-initramfs -c -k all >&2
    ls "$root"/boot/firmware/initrd.img* >/dev/null 2>&1 \
        || die "no initrd in /boot/firmware after update-initramfs"
fi
# /var is a tmpfs on the device (systemd.volatile=state): package caches in the image
# would only take space.
apt_in_root clean >&2
rm -rf "$root/var/lib/apt/lists/"* "$root/root/.cache"
rm -rf "$root/opt/portier/wheels"
mkdir -p "$root/opt/portier/docs"
cp "$here/docs/installation.md" "$root/opt/portier/docs/" 2>/dev/null || true

# --- 3. users, units, hardening --------------------------------------------------------
log "users, units, read-only root"
install -m 0644 "$here/systemd/portier.sysusers" "$root/usr/lib/sysusers.d/portier.conf"
install -m 0644 "$here/systemd/portier.tmpfiles" "$root/usr/lib/tmpfiles.d/portier.conf"
install -m 0644 "$here"/systemd/*.service "$root/usr/lib/systemd/system/"
systemd-sysusers --root="$root" >&2
systemctl --root="$root" enable edge-agent.service kiosk.service portier-firstboot.service \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
    wpa_supplicant@wlan0.service >&2
systemctl --root="$root" set-default graphical.target >&2
systemctl --root="$root" mask getty@tty1.service >&2
ln -sfn /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/wpa_supplicant"
ln -sf /etc/portier/wifi/wpa_supplicant-wlan0.conf "$root/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
# Empty machine-id: each device gets its own. `appliance provision` puts a stable one
# on the kernel command line (systemd.machine_id=); on a card never provisioned,
# systemd makes up a new one at each boot (the root is read-only).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# No password login for root at all (maintenance: serial console + SSH keys).
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"

# --- 4. check the units inside the real root -------------------------------------------
log "systemd-analyze verify and security inside the image root"
verify_err="$(systemd-analyze verify --root="$root" edge-agent.service kiosk.service \
    portier-firstboot.service 2>&1 >/dev/null)" || die "verify failed: $verify_err"
[ -z "$verify_err" ] || die "verify warned: $verify_err"
for unit in edge-agent kiosk portier-firstboot; do
    systemd-analyze security --offline=yes --root="$root" "$unit.service" | tail -1 >&2
done

# --- 5. Portier runs in the image (under emulation here) -------------------------------
log "smoke test inside the image"
in_root /opt/portier/venv/bin/python -c 'import hardware, edge_agent, kiosk, images, kivy, cv2, zxingcpp, pyzbar.pyzbar, nfc, gpiozero; print("imports ok")' >&2
in_root /opt/portier/venv/bin/appliance --help >/dev/null
in_root /opt/portier/venv/bin/python -c 'import importlib.util as u; \
assert not [m for m in ("central", "portier_demo") if u.find_spec(m)]; print("no central, no demo")' >&2
# `edge-agent demo` stays a command, and says in one line that the demo is not here.
if demo_out="$(in_root /opt/portier/venv/bin/edge-agent demo --dir /tmp/demo 2>&1)"; then
    die "edge-agent demo ran inside the image"
fi
case "$demo_out" in
    *"the demo is not installed here"*) ;;
    *) die "edge-agent demo in the image: $demo_out" ;;
esac
in_root /opt/portier/venv/bin/python -c 'from kiosk.i18n import translations as t; \
assert t("fr").gettext("Welcome") == "Bienvenue"; print("French catalogue ok")' >&2
if in_root /opt/portier/venv/bin/edge-agent selftest --help >/dev/null 2>&1; then
    in_root /opt/portier/venv/bin/edge-agent selftest --simulator --json > "$out/selftest-simulator.json" \
        || die "self-test on simulated hardware failed (see $out/selftest-simulator.json)"
    log "self-test on simulated hardware: $out/selftest-simulator.json"
else
    log "edge-agent selftest is not available in this checkout: self-test not run"
fi

# --- 6. partitions ---------------------------------------------------------------------
umount "$root/proc"; proc_mounted=0
log "splitting boot, root and data trees"
# The boot files leave the root tree (/boot/firmware is only a mount point in the image)
# and come back after assembly, so that a kept root can be layered again.
if [ -z "$from_image" ]; then
    cp -a "$root/boot/firmware/." "$boot/"
fi
mkdir -p "$work/boot-kept"
find "$root/boot/firmware" -mindepth 1 -maxdepth 1 -exec mv -t "$work/boot-kept" {} +
cmdline="console=serial0,115200 console=tty3 root=LABEL=rootfs rootfstype=ext4 ro rootwait"
cmdline+=" systemd.volatile=state fsck.repair=yes net.ifnames=0 quiet loglevel=3"
cmdline+=" vt.global_cursor_default=0"
echo "$cmdline" > "$boot/cmdline.txt"
rm -f "$root/etc/resolv.conf.bak"
uid() { awk -F: -v n="$1" '$1==n {print $3}' "$root/etc/passwd"; }
gid() { awk -F: -v n="$1" '$1==n {print $3}' "$root/etc/group"; }
install -d -m 0700 -o "$(uid portier)" -g "$(gid portier)" "$data/portier"
install -d -m 0700 -o "$(uid portier-kiosk)" -g "$(gid portier-kiosk)" "$data/portier-kiosk"
install -d -m 0700 "$data/portier-firstboot"
install -d -m 2751 -o 0 -g "$(gid portier)" "$data/etc-portier"
install -d -m 2755 -o 0 -g "$(gid systemd-journal)" "$data/journal"
install -d -m 0755 -o "$(uid systemd-timesync)" -g "$(gid systemd-timesync)" "$data/timesync"
# The clock of a Pi without RTC starts from this file's time: never before the build.
touch "$data/timesync/clock"; chown "$(uid systemd-timesync)" "$data/timesync/clock"
mkdir -p "$root/var/lib/portier" "$root/var/lib/portier-kiosk" "$root/var/lib/portier-firstboot" \
    "$root/var/log/journal" "$root/var/lib/systemd/timesync"

image="$out/portier-$suite-arm64.img"
log "assembling $image"
"$py" -m images.cli assemble "$image" --boot "$boot" --root "$root" --data "$data" \
    --boot-size 512 --data-size 256 >&2
rm -rf "$root/root/.kivy"
log "done: $image (+ .bmap, .sha256)"
echo "$image"
