/* The ceiling of confirmed publishing on this machine: a minimal librabbitmq publisher that keeps at most WINDOW
 * messages unconfirmed and reads the broker's basic.ack frames (honouring `multiple`). Used by
 * scripts/bench-producer.
 *
 *   raw-publish HOST PORT EXCHANGE COUNT WINDOW     prints "<confirmed> <seconds>" */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: raw-publish HOST PORT EXCHANGE COUNT WINDOW\n");
        return 2;
    }
    long count = atol(argv[4]), window = atol(argv[5]);
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (amqp_socket_open(socket, argv[1], atoi(argv[2])) != AMQP_STATUS_OK) return 1;
    if (amqp_login(conn, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
        AMQP_RESPONSE_NORMAL) return 1;
    amqp_channel_open(conn, 1);
    amqp_confirm_select(conn, 1);
    if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL) return 1;

    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 2;
    char body[256];
    long published = 0, confirmed = 0;
    double started = now();
    while (confirmed < count) {
        while (published < count && published - confirmed < window) {
            int n = snprintf(body, sizeof body,
                             "{\"event_id\":\"6f1c1f0e-5a53-4c8e-9d7e-%012ld\",\"type\":\"checkin\",\"user_id\":%ld,"
                             "\"occurred_at\":\"2026-01-01T08:29:58.224425Z\",\"space_id\":\"hq\"}",
                             published, 1 + published % 10000);
            amqp_bytes_t bytes = {(size_t)n, body};
            if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(argv[3]), amqp_cstring_bytes("checkin"), 1, 0, &props,
                                   bytes) != AMQP_STATUS_OK) return 1;
            published++;
        }
        amqp_frame_t frame;
        amqp_maybe_release_buffers(conn);
        if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) return 1;
        if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            confirmed = ack->multiple ? (long)ack->delivery_tag : confirmed + 1;
        }
    }
    printf("%ld %.3f\n", confirmed, now() - started);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return 0;
}
