#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H

/* librabbitmq 0.11 (Debian 12) installs its headers at the top of the include path; 0.12 and later under rabbitmq-c/. */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif

/* amqp_login is variadic (its SASL arguments), which Swift cannot call: this fixes them to PLAIN. */
static inline amqp_rpc_reply_t crabbitmq_login_plain(amqp_connection_state_t state, const char *vhost,
                                                          int channel_max, int frame_max, int heartbeat,
                                                          const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

/* The method numbers are macros with casts, which Swift does not import. */
static const amqp_method_number_t crabbitmq_connection_close_method = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t crabbitmq_connection_close_ok_method = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t crabbitmq_connection_blocked_method = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t crabbitmq_connection_unblocked_method = AMQP_CONNECTION_UNBLOCKED_METHOD;
static const amqp_method_number_t crabbitmq_channel_close_method = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t crabbitmq_channel_close_ok_method = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t crabbitmq_basic_deliver_method = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t crabbitmq_basic_ack_method = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t crabbitmq_basic_nack_method = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t crabbitmq_basic_return_method = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t crabbitmq_basic_cancel_method = AMQP_BASIC_CANCEL_METHOD;

#endif
