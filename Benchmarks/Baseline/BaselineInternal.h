#ifndef TAPS_BASELINE_INTERNAL_H
#define TAPS_BASELINE_INTERNAL_H

#include <openssl/ssl.h>

/* Shared by the baseline's programs (baseline.c, latency.c, datagram.c); not part of its API. */

/* A TLS 1.2+ context: the server's with its certificate, the client's verifying against `cert`
 * with no session cache (full handshakes, as taps-bench's client). */
SSL_CTX *baseline_make_ctx(int server, const char *cert, const char *key);

/* Names the calling server thread for perf and binds it to the server CPU (taps_baseline_bind_cpus). */
void baseline_bind_server_thread(const char *name);

/* The client runs on the caller's thread: named and bound between these two calls. */
void baseline_client_thread_begin(void);
void baseline_client_thread_end(void);

#endif
