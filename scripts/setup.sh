# Set-up shared by scripts/test and scripts/schemathesis: sourced, not run. Each step does only
# what is missing and says what it did; with DRY_RUN=1 it says what it would do and changes
# nothing. Steps that need root run directly as root, or with `sudo -n` (sudo without a
# password); without either they print the exact command to run and stop.
#
# Where things go: the Python test packages (scripts/requirements-test.txt) in a virtual
# environment at target/test-tools/python, the npm ones (scripts/package.json and its
# lockfile) in target/test-tools/node; both are put on PATH / NODE_PATH for the tests.

# The Debian packages the tests use, and what for:
#   chromium, chromium-driver  the dashboard's browser test (headless Chromium under chromedriver)
#   nginx, openssl             the deployment test: `nginx -t`, nginx with TLS in front of the gateway
#   docker-compose             the deployment test parses docker-compose.yml on both profiles
#   nodejs                     the README's JavaScript webhook check (and any npm test package)
#   python3                    daraja-mock, the README's Python webhook check, Schemathesis
#   libssl-dev, pkg-config     a test-only Daraja client (the `mpesa` crate) links OpenSSL
#   g++                        libFuzzer, built by cargo-fuzz (scripts/fuzz)
#   curl                       scripts/schemathesis
# and, unless MPESA_TEST_POSTGRES_URL / MPESA_TEST_MYSQL_URL name other servers, postgresql and
# mariadb-server for the local test databases.
# TEST_DEBIAN_PACKAGES="…" replaces the list (to try the installer on a package nobody uses).
DEBIAN_PACKAGES=(chromium chromium-driver nginx openssl docker-compose nodejs python3 libssl-dev
    pkg-config g++ curl)

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$ROOT_DIR/target/test-tools"
DRY_RUN="${DRY_RUN:-0}"
# The names the harness reads (crates/harness/src/env.rs) and their defaults.
DEFAULT_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL_URL="mysql://root@127.0.0.1:3306/mysql"
# The role set-up creates when a server lets no one in with the defaults (a fresh install).
TEST_ROLE="mpesa_test"

say() { echo "setup: $*" >&2; }

fail() {
    say "$*"
    exit 1
}

# How to run a command as root: nothing (we are root), sudo -n, or not at all.
if [ "$(id -u)" = 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    AS_ROOT=(sudo -n)
else
    AS_ROOT=(none)
fi

have_root() { [ "${AS_ROOT[*]-}" != none ]; }

# Runs a command as root; in a dry run, prints it.
as_root() {
    if [ "$DRY_RUN" = 1 ]; then
        say "would run (as root): $*"
    elif have_root; then
        "${AS_ROOT[@]}" "$@"
    else
        fail "needs root: $*"
    fi
}

# Runs a command (no root needed); in a dry run, prints it.
act() {
    if [ "$DRY_RUN" = 1 ]; then
        say "would run: $*"
    else
        "$@"
    fi
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

# apt-get install, waiting for another engineer's apt to finish rather than failing on the lock.
apt_install() {
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "$@" >/dev/null
}

setup_debian_packages() {
    local packages missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        say "not a Debian system: install the equivalents of ${DEBIAN_PACKAGES[*]} yourself"
        say "(the tests that need a missing one fail and name it)"
        return 0
    fi
    read -r -a packages <<< "${TEST_DEBIAN_PACKAGES:-${DEBIAN_PACKAGES[*]}}"
    if [ -z "${TEST_DEBIAN_PACKAGES:-}" ]; then
        [ -n "${MPESA_TEST_POSTGRES_URL:-}" ] || packages+=(postgresql)
        [ -n "${MPESA_TEST_MYSQL_URL:-}" ] || packages+=(mariadb-server)
    fi
    for p in "${packages[@]}"; do
        deb_installed "$p" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages: all ${#packages[@]} installed"
        return 0
    fi
    if ! have_root && [ "$DRY_RUN" != 1 ]; then
        say "missing Debian packages: ${missing[*]}"
        say "install them as root, then run this again:"
        echo "    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    apt_install "${missing[@]}"
    for p in "${missing[@]}"; do
        [ "$p" = nginx ] && stop_packaged_nginx
    done
    return 0
}

# The nginx package starts a server on port 80 where the system lets it; the tests run their own
# nginx processes (with their own pid files), so only the packaged one is stopped.
stop_packaged_nginx() {
    local pid
    pid="$(cat /run/nginx.pid 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "stopping the packaged nginx (pid $pid) that the install started"
        as_root nginx -s stop
    elif [ "$DRY_RUN" = 1 ]; then
        say "would stop the packaged nginx if the install started it (/run/nginx.pid)"
    fi
}

# scripts/requirements-test.txt in target/test-tools/python, reinstalled when the file changes;
# its bin directory goes first on PATH, so `python3` in the tests has them.
setup_python() {
    local venv="$TOOLS_DIR/python" requirements="$ROOT_DIR/scripts/requirements-test.txt" want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python3" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
        export PATH="$venv/bin:$PATH"
        say "Python packages: up to date in target/test-tools/python"
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || fail "python3 is missing (Debian package python3)"
    if [ "$DRY_RUN" = 1 ]; then
        say "would create target/test-tools/python and pip install -r scripts/requirements-test.txt"
        return 0
    fi
    say "installing the Python test packages (scripts/requirements-test.txt) into target/test-tools/python"
    rm -rf "$venv"
    mkdir -p "$TOOLS_DIR"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's own python3 makes virtual environments only with python3-venv.
        rm -rf "$venv"
        deb_installed python3-venv && fail "python3 -m venv fails although python3-venv is installed"
        have_root || fail "python3 cannot make a virtual environment: install python3-venv as root (apt-get install -y python3-venv) and run this again"
        apt_install python3-venv
        python3 -m venv "$venv" || fail "python3 -m venv failed"
    fi
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
        || fail "pip install -r scripts/requirements-test.txt failed"
    echo "$want" > "$venv/.requirements.sha256"
    export PATH="$venv/bin:$PATH"
}

# scripts/package.json's dependencies, as its lockfile pins them, in target/test-tools/node,
# reinstalled when the lockfile changes; NODE_PATH lets the tests' `node` require them. Skipped
# while package.json names none (Debian's npm is a large package to install for nothing).
setup_node() {
    local dir="$TOOLS_DIR/node" lock="$ROOT_DIR/scripts/package-lock.json" want count
    command -v node >/dev/null 2>&1 || { [ "$DRY_RUN" = 1 ] && return 0; fail "node is missing (Debian package nodejs)"; }
    count="$(node -e 'const p = require(process.argv[1]);
        console.log(Object.keys({ ...p.dependencies, ...p.devDependencies }).length)' \
        "$ROOT_DIR/scripts/package.json")"
    if [ "$count" = 0 ]; then
        say "npm packages: none in scripts/package.json"
        return 0
    fi
    want="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [ "$(cat "$dir/.lock.sha256" 2>/dev/null)" != "$want" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            have_root || [ "$DRY_RUN" = 1 ] || fail "npm is missing: install it as root (apt-get install -y npm) and run this again"
            apt_install npm
        fi
        say "installing the npm test packages (scripts/package.json) into target/test-tools/node"
        act rm -rf "$dir"
        act mkdir -p "$dir"
        act cp "$ROOT_DIR/scripts/package.json" "$lock" "$dir/"
        act npm ci --prefix "$dir" --no-audit --no-fund --silent
        [ "$DRY_RUN" = 1 ] || echo "$want" > "$dir/.lock.sha256"
    else
        say "npm packages: up to date in target/test-tools/node"
    fi
    export NODE_PATH="$dir/node_modules${NODE_PATH:+:$NODE_PATH}"
}

# A part of a URL (host, port, user, password), percent-decoded.
url_part() {
    local re='^[a-z]+://(([^:@/]*)(:([^@/]*))?@)?([^:/]+)(:([0-9]+))?(/.*)?$' value
    [[ "$1" =~ $re ]] || fail "not a database URL: ${1%%@*}…"
    case "$2" in
        user) value="${BASH_REMATCH[2]}" ;;
        password) value="${BASH_REMATCH[4]}" ;;
        host) value="${BASH_REMATCH[5]}" ;;
        port) value="${BASH_REMATCH[7]}" ;;
    esac
    printf '%b\n' "${value//%/\\x}"
}

is_local() { [ "$1" = 127.0.0.1 ] || [ "$1" = localhost ] || [ "$1" = ::1 ]; }

# Waits up to a minute for `check` to succeed.
wait_for() {
    local what="$1" i
    shift
    for i in $(seq 1 60); do
        "$@" && return 0
        sleep 1
    done
    fail "$what did not come up within a minute"
}

# PostgreSQL at MPESA_TEST_POSTGRES_URL (or the default): started when it is a local cluster
# that is installed but stopped; when the default cannot log in (a fresh install lets no one in
# over TCP without a password), a test role is made and MPESA_TEST_POSTGRES_URL points at it.
setup_postgres() {
    local url="${MPESA_TEST_POSTGRES_URL:-$DEFAULT_POSTGRES_URL}" host port cluster
    host="$(url_part "$url" host)"
    port="$(url_part "$url" port)"
    port="${port:-5432}"
    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        [ "$DRY_RUN" = 1 ] && { say "would check PostgreSQL once installed"; return 0; }
        say "PostgreSQL: no client (psql) to check $host:$port with; the tests will say if it is unreachable"
        return 0
    fi
    if ! pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
        is_local "$host" || fail "PostgreSQL at $host:$port does not answer (MPESA_TEST_POSTGRES_URL)"
        if ! command -v pg_lsclusters >/dev/null 2>&1 && [ "$DRY_RUN" = 1 ]; then
            say "would start PostgreSQL once installed"
            return 0
        fi
        command -v pg_lsclusters >/dev/null 2>&1 || fail "PostgreSQL is not installed (Debian package postgresql) and nothing answers on $host:$port"
        cluster="$(pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p { print $1 " " $2; exit }')"
        [ -n "$cluster" ] || fail "no local PostgreSQL cluster listens on port $port (pg_lsclusters)"
        say "starting PostgreSQL (cluster $cluster)"
        # shellcheck disable=SC2086 # "VERSION NAME"
        as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
        [ "$DRY_RUN" = 1 ] && return 0
        wait_for "PostgreSQL" pg_isready -q -h "$host" -p "$port"
    fi
    if psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
        say "PostgreSQL: ready at $host:$port"
        return 0
    fi
    [ -z "${MPESA_TEST_POSTGRES_URL:-}" ] || fail "cannot log in to PostgreSQL with MPESA_TEST_POSTGRES_URL"
    is_local "$host" || fail "cannot log in to PostgreSQL at $host:$port"
    say "PostgreSQL lets no one in as $DEFAULT_POSTGRES_URL: making the test role $TEST_ROLE"
    as_root runuser -u postgres -- psql -q -p "$port" -c "DO \$\$ BEGIN
        CREATE ROLE $TEST_ROLE LOGIN SUPERUSER PASSWORD '$TEST_ROLE';
        EXCEPTION WHEN duplicate_object THEN ALTER ROLE $TEST_ROLE LOGIN SUPERUSER PASSWORD '$TEST_ROLE';
        END \$\$;"
    export MPESA_TEST_POSTGRES_URL="postgres://$TEST_ROLE:$TEST_ROLE@127.0.0.1:$port/postgres"
    [ "$DRY_RUN" = 1 ] && return 0
    psql "$MPESA_TEST_POSTGRES_URL" -Atqc 'SELECT 1' >/dev/null \
        || fail "cannot log in to PostgreSQL as $TEST_ROLE either (pg_hba.conf?)"
    say "PostgreSQL: ready at $host:$port as $TEST_ROLE; for cargo test alone:"
    echo "    export MPESA_TEST_POSTGRES_URL=$MPESA_TEST_POSTGRES_URL" >&2
}

# `ping` succeeds whenever the server answers, even when it refuses the login.
mariadb_answers() { mariadb-admin -h "$1" -P "$2" --connect-timeout=2 ping >/dev/null 2>&1; }

# MariaDB at MPESA_TEST_MYSQL_URL (or the default), the same way.
setup_mariadb() {
    local url="${MPESA_TEST_MYSQL_URL:-$DEFAULT_MYSQL_URL}" host port user password
    host="$(url_part "$url" host)"
    port="$(url_part "$url" port)"
    port="${port:-3306}"
    user="$(url_part "$url" user)"
    password="$(url_part "$url" password)"
    if ! command -v mariadb-admin >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1; then
        [ "$DRY_RUN" = 1 ] && { say "would check MariaDB once installed"; return 0; }
        say "MariaDB: no client (mariadb) to check $host:$port with; the tests will say if it is unreachable"
        return 0
    fi
    if ! mariadb_answers "$host" "$port"; then
        is_local "$host" || fail "MariaDB at $host:$port does not answer (MPESA_TEST_MYSQL_URL)"
        if [ ! -x /usr/sbin/mariadbd ] && [ "$DRY_RUN" = 1 ]; then
            say "would start MariaDB once installed"
            return 0
        fi
        [ -x /usr/sbin/mariadbd ] || fail "MariaDB is not installed (Debian package mariadb-server) and nothing answers on $host:$port"
        say "starting MariaDB"
        as_root install -d -o mysql -g mysql /run/mysqld
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        [ "$DRY_RUN" = 1 ] && return 0
        wait_for "MariaDB" mariadb_answers "$host" "$port"
    fi
    if MYSQL_PWD="$password" mariadb -h "$host" -P "$port" -u "$user" -e 'SELECT 1' >/dev/null 2>&1; then
        say "MariaDB: ready at $host:$port"
        return 0
    fi
    [ -z "${MPESA_TEST_MYSQL_URL:-}" ] || fail "cannot log in to MariaDB with MPESA_TEST_MYSQL_URL"
    is_local "$host" || fail "cannot log in to MariaDB at $host:$port"
    say "MariaDB lets no one in as $DEFAULT_MYSQL_URL: making the test user $TEST_ROLE"
    # As the system's root, through the socket (unix_socket authentication).
    as_root mariadb -e "
        CREATE USER IF NOT EXISTS '$TEST_ROLE'@'127.0.0.1' IDENTIFIED BY '$TEST_ROLE';
        CREATE USER IF NOT EXISTS '$TEST_ROLE'@'localhost' IDENTIFIED BY '$TEST_ROLE';
        GRANT ALL PRIVILEGES ON *.* TO '$TEST_ROLE'@'127.0.0.1' WITH GRANT OPTION;
        GRANT ALL PRIVILEGES ON *.* TO '$TEST_ROLE'@'localhost' WITH GRANT OPTION;"
    export MPESA_TEST_MYSQL_URL="mysql://$TEST_ROLE:$TEST_ROLE@127.0.0.1:$port/mysql"
    [ "$DRY_RUN" = 1 ] && return 0
    MYSQL_PWD="$TEST_ROLE" mariadb -h "$host" -P "$port" -u "$TEST_ROLE" -e 'SELECT 1' >/dev/null \
        || fail "cannot log in to MariaDB as $TEST_ROLE either"
    say "MariaDB: ready at $host:$port as $TEST_ROLE; for cargo test alone:"
    echo "    export MPESA_TEST_MYSQL_URL=$MPESA_TEST_MYSQL_URL" >&2
}
