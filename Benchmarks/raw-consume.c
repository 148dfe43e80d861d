/* The ceiling of consuming on this machine: a minimal librabbitmq consumer that does nothing but receive and
 * acknowledge (by default prefetch 1000, one multiple-ack every 500 messages). Used by scripts/bench-consumer.
 *
 *   raw-consume HOST PORT QUEUE COUNT [PREFETCH ACK_EVERY RATE]     prints "<count> <seconds>"
 *
 * With RATE, each multiple-ack waits until no more than RATE messages a second have been acknowledged since the
 * first delivery: the broker's side of a consumer whose batches take that long to fold. */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void check(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "raw-consume: %s failed\n", what);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 8) {
        fprintf(stderr, "usage: raw-consume HOST PORT QUEUE COUNT [PREFETCH ACK_EVERY RATE]\n");
        return 2;
    }
    long target = atol(argv[4]);
    int prefetch = argc == 8 ? atoi(argv[5]) : 1000;
    long ack_every = argc == 8 ? atol(argv[6]) : 500;
    double rate = argc == 8 ? atof(argv[7]) : 0;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (amqp_socket_open(socket, argv[1], atoi(argv[2])) != AMQP_STATUS_OK) {
        fprintf(stderr, "raw-consume: cannot connect\n");
        return 1;
    }
    check(amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
    amqp_channel_open(conn, 1);
    check(amqp_get_rpc_reply(conn), "channel.open");
    amqp_basic_qos(conn, 1, 0, prefetch, 0);
    check(amqp_get_rpc_reply(conn), "basic.qos");
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[3]), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check(amqp_get_rpc_reply(conn), "basic.consume");

    long received = 0;
    double started = 0;
    while (received < target) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, NULL, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "raw-consume: consume failed after %ld\n", received);
            return 1;
        }
        if (received == 0) started = now();
        received++;
        if (received % ack_every == 0 || received == target) {
            double early = rate > 0 ? started + received / rate - now() : 0;
            if (early > 0) {
                struct timespec pause = {(time_t)early, (long)((early - (time_t)early) * 1e9)};
                nanosleep(&pause, NULL);
            }
            amqp_basic_ack(conn, 1, envelope.delivery_tag, 1);
        }
        amqp_destroy_envelope(&envelope);
    }
    printf("%ld %.3f\n", received, now() - started);
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return 0;
}
