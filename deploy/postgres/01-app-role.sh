#!/bin/sh
# Creates the application's login role, bluespark_app, with deploy/postgres/app-role.sql
# (docs/operations.md, "Database roles").
#
# The postgres image runs this once, as POSTGRES_USER (bluespark, the tables'
# owner), when it initialises an empty data directory. On a cluster that
# already exists, run it by hand; it is safe to run again:
#     docker compose exec postgres /docker-entrypoint-initdb.d/01-app-role.sh
#
# The password never reaches a command line or the output: psql reads the
# secret file itself (a backquoted `cat` in a \set), and app-role.sql quotes
# it as a literal (:'app_password').
#
# In a subshell, so that its options and exit stay its own even when the
# entrypoint sources it (it does when the file is not executable).
(
	set -eu
	password_file=${POSTGRES_APP_PASSWORD_FILE:-/run/secrets/postgres_app_password}
	sql_file=${BLUESPARK_APP_ROLE_SQL:-/etc/bluespark/app-role.sql}

	case $password_file in
	*[!A-Za-z0-9_./-]*)
		echo "01-app-role.sh: unusual characters in the password file's path: $password_file" >&2
		exit 1
		;;
	esac
	if [ ! -r "$password_file" ] || ! grep -q '[^[:space:]]' "$password_file"; then
		echo "01-app-role.sh: $password_file is missing or empty (make secrets creates it)" >&2
		exit 1
	fi
	if [ ! -r "$sql_file" ]; then
		echo "01-app-role.sh: cannot read $sql_file" >&2
		exit 1
	fi

	{
		printf '\\set app_password `cat %s`\n' "$password_file"
		cat "$sql_file"
	} | psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 --single-transaction \
		--username "${POSTGRES_USER:?}" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" --file -
	echo "01-app-role.sh: role bluespark_app is ready in database ${POSTGRES_DB:-$POSTGRES_USER}"
)
