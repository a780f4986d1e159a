#ifndef TAPS_BASELINE_INTERNAL_H
#define TAPS_BASELINE_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/socket.h>

/* Shared by the baseline's programs (baseline.c, latency.c, datagram.c); not part of its API. */

/* A server thread that reports its port once it listens. */
typedef struct {
    pthread_t id;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    int started;
    int port;
} baseline_thread;

/* Runs `body(arg)` on a new thread and returns once it called baseline_thread_listening. */
void baseline_thread_start(baseline_thread *thread, void *(*body)(void *), void *arg);
/* Called by the thread: it listens on `bound` (an IPv4 address). */
void baseline_thread_listening(baseline_thread *thread, const struct sockaddr_storage *bound);
void baseline_thread_join(baseline_thread *thread);

/* A TLS 1.2+ context: the server's with its certificate, the client's verifying against `cert`
 * with no session cache (full handshakes, as taps-bench's client). */
SSL_CTX *baseline_make_ctx(int server, const char *cert, const char *key);

/* Names the calling server thread for perf and binds it to the server CPU (taps_baseline_bind_cpus). */
void baseline_bind_server_thread(const char *name);

/* The client runs on the caller's thread: named and bound between these two calls. */
void baseline_client_thread_begin(void);
void baseline_client_thread_end(void);

#endif
