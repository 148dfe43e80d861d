#!/bin/sh
# Creates the broker's users, one per role, each with the permissions its role needs and no more, through the
# management API; idempotent (a user's password and permissions are set again). Run by scripts/services, compose's
# broker-users service and the k8s broker-users Job, with:
#   RABBITMQ_API                                   the management API, such as http://rabbitmq:15672
#   RABBITMQ_ADMIN_USER, RABBITMQ_ADMIN_PASSWORD   an administrator, used for this and by no program
#   PUBLISHER_PASSWORD     coworking-publisher:    publishes to coworking.events, nothing else (check-in services,
#                                                  producer publish, replay, backfill, load)
#   CONSUMER_PASSWORD      coworking-consumer:     declares the topology, consumes coworking.rollups, publishes to
#                                                  coworking.dead; cannot publish events
#   DEAD_LETTERS_PASSWORD  coworking-dead-letters: reads and removes from coworking.dead, publishes to
#                                                  coworking.events (producer dead-letters)
#   MONITOR_PASSWORD       coworking-monitor:      reads the management API, changes nothing (KEDA, Prometheus)
# Passwords travel on standard input and a file descriptor, never in a process's arguments. The names are the
# defaults of EXCHANGE, QUEUE and DEAD_LETTER_EXCHANGE: change the patterns below with them.
set -eu
vhost=${RABBITMQ_VHOST:-%2F}

# A JSON string's content: backslashes and quotes escaped.
json() {
    printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'
}

# PUT $1 (a path under /api/) with the JSON on standard input, as the administrator.
put() {
    curl -sSf -K /dev/fd/3 -X PUT -H 'content-type: application/json' --data-binary @- "$RABBITMQ_API/api/$1" \
        >/dev/null 3<<CREDENTIALS
user = "$(json "$RABBITMQ_ADMIN_USER"):$(json "$RABBITMQ_ADMIN_PASSWORD")"
CREDENTIALS
}

# user NAME PASSWORD TAGS CONFIGURE WRITE READ
user() {
    printf '{"password":"%s","tags":"%s"}' "$(json "$2")" "$3" | put "users/$1"
    printf '{"configure":"%s","write":"%s","read":"%s"}' "$4" "$5" "$6" | put "permissions/$vhost/$1"
}

user coworking-publisher "$PUBLISHER_PASSWORD" "" '^$' '^coworking[.]events$' '^$'
user coworking-consumer "$CONSUMER_PASSWORD" "" \
    '^coworking[.](events|rollups|dead)$' '^coworking[.](rollups|dead)$' '^coworking[.](events|rollups|dead)$'
user coworking-dead-letters "$DEAD_LETTERS_PASSWORD" "" '^$' '^coworking[.](events|dead)$' '^coworking[.]dead$'
user coworking-monitor "$MONITOR_PASSWORD" monitoring '^$' '^$' '^$'
