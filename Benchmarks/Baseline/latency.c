/* The C baseline of taps-bench --latency: one message at a time, echoed back, over TCP, TLS over
 * TCP (memory BIOs) or UDP on libuv. An echo server on its own loop thread, the client on the
 * caller's thread, like taps-bench's two loops. */
#define _GNU_SOURCE
#include "TapsBaseline.h"
#include "BaselineInternal.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum { MODE_TCP = 0, MODE_TLS = 1, MODE_UDP = 2 };
#define ECHO_BUFFER (64u * 1024u)

typedef struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_udp_t udp;
    uv_async_t stopper;
    SSL_CTX *ctx;
    int mode;
    baseline_thread thread;
} echo_server;

/* One TCP connection, at either end: the socket, TLS state if any, a read buffer. */
typedef struct {
    uv_tcp_t tcp;
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshaken;
    char buffer[ECHO_BUFFER];
    struct ping_client *client;  /* NULL on the server side */
} stream_peer;

typedef struct ping_client {
    uv_loop_t loop;
    uv_udp_t udp;
    /* Ends the run a second after the deadline if an echo never came (a lost datagram). */
    uv_timer_t watchdog;
    stream_peer *peer;
    SSL_CTX *ctx;
    int mode;
    char *message;
    size_t size;
    size_t received;
    uint64_t sent_ns, deadline_ns;
    uint64_t *samples;
    size_t capacity, count;
    int error;
} ping_client;

static void alloc_peer(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    stream_peer *p = handle->data;
    *buf = uv_buf_init(p->buffer, ECHO_BUFFER);
}

static void free_stream_peer(uv_handle_t *handle) {
    stream_peer *p = handle->data;
    if (p->ssl) SSL_free(p->ssl);
    free(p);
}

static void free_write(uv_write_t *req, int status) {
    (void)status;
    free(req);
}

/* Writes now if the socket takes it all, or queues a copy. */
static void write_bytes(uv_stream_t *stream, const char *bytes, size_t count) {
    uv_buf_t direct = uv_buf_init((char *)bytes, (unsigned)count);
    int written = uv_stream_get_write_queue_size(stream) == 0 ? uv_try_write(stream, &direct, 1) : UV_EAGAIN;
    if (written == (int)count) return;
    size_t offset = written > 0 ? (size_t)written : 0;
    uv_write_t *req = malloc(sizeof *req + count - offset);
    char *copy = (char *)(req + 1);
    memcpy(copy, bytes + offset, count - offset);
    uv_buf_t buf = uv_buf_init(copy, (unsigned)(count - offset));
    uv_write(req, stream, &buf, 1, free_write);
}

static void flush_ciphertext(stream_peer *p) {
    char out[ECHO_BUFFER];
    int n;
    while ((n = BIO_read(p->wbio, out, sizeof out)) > 0) write_bytes((uv_stream_t *)&p->tcp, out, (size_t)n);
}

static stream_peer *new_stream_peer(uv_loop_t *loop, SSL_CTX *ctx, int server) {
    stream_peer *p = calloc(1, sizeof *p);
    uv_tcp_init(loop, &p->tcp);
    uv_tcp_nodelay(&p->tcp, 1);
    p->tcp.data = p;
    if (ctx) {
        p->ssl = SSL_new(ctx);
        p->rbio = BIO_new(BIO_s_mem());
        p->wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(p->ssl, p->rbio, p->wbio);
        if (server) SSL_set_accept_state(p->ssl); else SSL_set_connect_state(p->ssl);
    }
    return p;
}

/* Feeds ciphertext in and runs the handshake; returns 1 once it is done, -1 on failure. */
static int tls_input(stream_peer *p, const char *bytes, size_t count) {
    BIO_write(p->rbio, bytes, (int)count);
    if (p->handshaken) return 1;
    int r = SSL_do_handshake(p->ssl);
    flush_ciphertext(p);
    if (r == 1) { p->handshaken = 1; return 1; }
    if (SSL_get_error(p->ssl, r) == SSL_ERROR_WANT_READ) return 0;
    ERR_clear_error();
    return -1;
}

/* ---- the echo server ---- */

static void echo_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    stream_peer *p = stream->data;
    if (nread < 0) { uv_close((uv_handle_t *)stream, free_stream_peer); return; }
    if (nread == 0) return;
    if (!p->ssl) { write_bytes(stream, buf->base, (size_t)nread); return; }
    int state = tls_input(p, buf->base, (size_t)nread);
    if (state < 0) { uv_close((uv_handle_t *)stream, free_stream_peer); return; }
    if (state == 0) return;
    char plain[ECHO_BUFFER];
    int n;
    while ((n = SSL_read(p->ssl, plain, sizeof plain)) > 0) SSL_write(p->ssl, plain, n);
    flush_ciphertext(p);
}

static void echo_accept(uv_stream_t *listener, int status) {
    if (status != 0) return;
    echo_server *s = listener->data;
    stream_peer *p = new_stream_peer(&s->loop, s->ctx, 1);
    if (uv_accept(listener, (uv_stream_t *)&p->tcp) != 0) { uv_close((uv_handle_t *)&p->tcp, free_stream_peer); return; }
    uv_read_start((uv_stream_t *)&p->tcp, alloc_peer, echo_read);
}

static char udp_echo_buffer[ECHO_BUFFER];
static void alloc_udp_echo(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)handle; (void)suggested;
    *buf = uv_buf_init(udp_echo_buffer, ECHO_BUFFER);
}

static void echo_datagram(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags) {
    (void)flags;
    if (nread <= 0 || !from) return;
    uv_buf_t reply = uv_buf_init(buf->base, (unsigned)nread);
    uv_udp_try_send(udp, &reply, 1, from);
}

static void close_echo_handle(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (uv_is_closing(handle)) return;
    int is_peer = handle->type == UV_TCP && handle->data != handle->loop->data;
    uv_close(handle, is_peer ? free_stream_peer : NULL);
}

static void echo_stop(uv_async_t *async) { uv_walk(async->loop, close_echo_handle, NULL); }

static void *echo_thread(void *arg) {
    echo_server *s = arg;
    baseline_bind_server_thread("base-echo");
    uv_loop_init(&s->loop);
    s->loop.data = s;
    uv_async_init(&s->loop, &s->stopper, echo_stop);
    s->stopper.data = s;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    struct sockaddr_storage bound;
    int length = sizeof bound;
    if (s->mode == MODE_UDP) {
        uv_udp_init(&s->loop, &s->udp);
        s->udp.data = s;
        uv_udp_bind(&s->udp, (const struct sockaddr *)&addr, 0);
        uv_udp_recv_start(&s->udp, alloc_udp_echo, echo_datagram);
        uv_udp_getsockname(&s->udp, (struct sockaddr *)&bound, &length);
    } else {
        uv_tcp_init(&s->loop, &s->listener);
        s->listener.data = s;
        uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
        uv_listen((uv_stream_t *)&s->listener, 16, echo_accept);
        uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &length);
    }
    baseline_thread_listening(&s->thread, &bound);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return NULL;
}

/* ---- the client ---- */

static void send_ping(ping_client *c);

static void client_done(ping_client *c) {
    uv_close((uv_handle_t *)&c->watchdog, NULL);
    if (c->mode == MODE_UDP) uv_close((uv_handle_t *)&c->udp, NULL);
    else uv_close((uv_handle_t *)&c->peer->tcp, free_stream_peer);
}

/* `count` bytes of the echo arrived; a whole message ends one round trip. */
static void echo_arrived(ping_client *c, size_t count) {
    c->received += count;
    if (c->received < c->size) return;
    uint64_t now = uv_hrtime();
    if (c->count < c->capacity) c->samples[c->count++] = now - c->sent_ns;
    c->received = 0;
    if (now >= c->deadline_ns || c->count == c->capacity) { client_done(c); return; }
    send_ping(c);
}

static void send_ping(ping_client *c) {
    c->sent_ns = uv_hrtime();
    switch (c->mode) {
    case MODE_UDP: {
        uv_buf_t buf = uv_buf_init(c->message, (unsigned)c->size);
        if (uv_udp_try_send(&c->udp, &buf, 1, NULL) < 0) { c->error = 3; client_done(c); }
        break;
    }
    case MODE_TLS:
        SSL_write(c->peer->ssl, c->message, (int)c->size);
        flush_ciphertext(c->peer);
        break;
    default:
        write_bytes((uv_stream_t *)&c->peer->tcp, c->message, c->size);
    }
}

static void watchdog_fired(uv_timer_t *timer) {
    ping_client *c = timer->data;
    c->error = 4;
    client_done(c);
}

static void client_stream_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    stream_peer *p = stream->data;
    ping_client *c = p->client;
    if (nread < 0) { c->error = 2; uv_close((uv_handle_t *)stream, free_stream_peer); return; }
    if (nread == 0) return;
    if (!p->ssl) { echo_arrived(c, (size_t)nread); return; }
    int was_handshaken = p->handshaken;
    int state = tls_input(p, buf->base, (size_t)nread);
    if (state < 0) { c->error = 2; uv_close((uv_handle_t *)stream, free_stream_peer); return; }
    if (state == 0) return;
    if (!was_handshaken) { send_ping(c); return; }
    char plain[ECHO_BUFFER];
    int n;
    while ((n = SSL_read(p->ssl, plain, sizeof plain)) > 0) {
        echo_arrived(c, (size_t)n);
        if (uv_is_closing((uv_handle_t *)stream)) return;
    }
}

static void client_connected(uv_connect_t *req, int status) {
    stream_peer *p = req->data;
    free(req);
    if (status != 0) { p->client->error = 1; uv_close((uv_handle_t *)&p->tcp, free_stream_peer); return; }
    uv_read_start((uv_stream_t *)&p->tcp, alloc_peer, client_stream_read);
    if (p->ssl) {
        SSL_do_handshake(p->ssl);
        flush_ciphertext(p);
    } else {
        send_ping(p->client);
    }
}

static char udp_client_buffer[ECHO_BUFFER];
static void alloc_udp_client(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)handle; (void)suggested;
    *buf = uv_buf_init(udp_client_buffer, ECHO_BUFFER);
}

static void client_datagram(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags) {
    (void)buf; (void)from; (void)flags;
    if (nread > 0) echo_arrived(udp->data, (size_t)nread);
}

long taps_baseline_latency(int mode, double seconds, size_t message_size, const char *cert, const char *key,
                           uint64_t *samples, size_t capacity) {
    echo_server *s = calloc(1, sizeof *s);
    s->mode = mode;
    if (mode == MODE_TLS) s->ctx = baseline_make_ctx(1, cert, key);
    baseline_thread_start(&s->thread, echo_thread, s);

    ping_client c = {0};
    c.mode = mode;
    c.size = message_size;
    c.message = malloc(message_size);
    memset(c.message, 'x', message_size);
    c.samples = samples;
    c.capacity = capacity;
    if (mode == MODE_TLS) c.ctx = baseline_make_ctx(0, cert, NULL);
    baseline_client_thread_begin();
    uv_loop_init(&c.loop);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", s->thread.port, &addr);
    c.deadline_ns = uv_hrtime() + (uint64_t)(seconds * 1e9);
    uv_timer_init(&c.loop, &c.watchdog);
    c.watchdog.data = &c;
    uv_timer_start(&c.watchdog, watchdog_fired, (uint64_t)(seconds * 1000) + 1000, 0);
    if (mode == MODE_UDP) {
        uv_udp_init(&c.loop, &c.udp);
        c.udp.data = &c;
        uv_udp_connect(&c.udp, (const struct sockaddr *)&addr);
        uv_udp_recv_start(&c.udp, alloc_udp_client, client_datagram);
        send_ping(&c);
    } else {
        c.peer = new_stream_peer(&c.loop, c.ctx, 0);
        c.peer->client = &c;
        if (c.peer->ssl) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.peer->ssl), "127.0.0.1");
        uv_connect_t *req = malloc(sizeof *req);
        req->data = c.peer;
        uv_tcp_connect(req, &c.peer->tcp, (const struct sockaddr *)&addr, client_connected);
    }
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uv_loop_close(&c.loop);
    baseline_client_thread_end();

    uv_async_send(&s->stopper);
    baseline_thread_join(&s->thread);
    if (s->ctx) SSL_CTX_free(s->ctx);
    if (c.ctx) SSL_CTX_free(c.ctx);
    free(s);
    free(c.message);
    return c.error ? -c.error : (long)c.count;
}
