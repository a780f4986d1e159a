/* The C baseline for taps-bench: libuv + OpenSSL memory BIOs, nothing else. */
#define _GNU_SOURCE  /* pthread_setname_np */
#include <malloc.h>
#include "TapsBaseline.h"
#include "BaselineInternal.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* As much as a Taps Connection lets wait before `send` suspends (ProtocolStack.sendHighWater):
 * 512 KB on TLS, 4 MB on TCP. The TLS baseline ran as fast with 4 MB (1157 against 1143 MB/s,
 * medians of 6 alternating runs). */
#define WRITE_HIGH_WATER(tls) ((tls) ? 512u * 1024u : 4u * 1024u * 1024u)
#define READ_BUFFER (256u * 1024u)
/* The read buffer starts half a page in, as Taps' does: the kernel's copy into a buffer 16 bytes
 * into a page (where malloc puts a 256 KB block it serves with mmap) runs at half speed on this
 * machine, so the baseline's speed depended on whether malloc had raised its mmap threshold yet. */
#define READ_BUFFER_PAGE_OFFSET 2048u
/* The message starts half a page in, as taps-bench's does (BulkTransfer.message), for the same
 * reason seen from the sender: the kernel's copy of a message that starts 16 bytes before a page
 * boundary into its page-aligned socket buffers runs at a third of the speed (1.0 against
 * 3.3 GB/s), and where malloc put the message decided which speed a run got. */
#define MESSAGE_PAGE_OFFSET 2048u

typedef struct peer peer;

typedef struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    SSL_CTX *ctx;
    int tls;
    uint64_t bytes;
    uint64_t first_ns, last_ns;
    uint64_t handshakes;
    int stop;
    uv_async_t stopper;
    baseline_thread thread;
} server_state;

struct peer {
    uv_tcp_t tcp;
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshaken;
    char *read_buffer;       /* READ_BUFFER_PAGE_OFFSET bytes into read_allocation */
    char *read_allocation;
    server_state *server;
    struct client_state *client;
};

typedef struct client_state {
    uv_loop_t loop;
    SSL_CTX *ctx;
    int tls;
    int port;
    int handshake_mode;
    size_t message_size;
    char *message;
    uint64_t deadline_ns;
    int stopping;
    uint64_t handshakes;
    uint64_t started_ns;
    peer *current;
    int error;
} client_state;

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    peer *p = handle->data;
    *buf = uv_buf_init(p->read_buffer, READ_BUFFER);
}

static void free_peer(uv_handle_t *handle) {
    peer *p = handle->data;
    if (p->ssl) SSL_free(p->ssl);
    free(p->read_allocation);
    free(p);
}

/* Ciphertext chunks are reused through a free list (per thread), so a busy connection does not
 * keep asking the allocator for fresh pages. */
#define CHUNK_SIZE (256u * 1024u)
typedef struct owned_write { uv_write_t req; char *data; struct owned_write *next; } owned_write;
static __thread owned_write *spare_chunks;

static owned_write *take_chunk(void) {
    owned_write *w = spare_chunks;
    if (w) { spare_chunks = w->next; return w; }
    w = malloc(sizeof *w);
    w->data = malloc(CHUNK_SIZE);
    return w;
}

static void recycle_chunk(owned_write *w) { w->next = spare_chunks; spare_chunks = w; }

static void on_owned_written(uv_write_t *req, int status) {
    (void)status;
    recycle_chunk((owned_write *)req);
}

/* Moves pending ciphertext from the memory BIO to the socket: uv_try_write from a reusable
 * buffer, and a pooled copy (uv_write) only for what the kernel did not take at once. */
static __thread char *scratch;

static void flush_tls(peer *p, uv_write_cb cb) {
    uv_stream_t *stream = (uv_stream_t *)&p->tcp;
    if (!scratch) scratch = malloc(CHUNK_SIZE);
    while (BIO_ctrl_pending(p->wbio) > 0) {
        int n = BIO_read(p->wbio, scratch, CHUNK_SIZE);
        if (n <= 0) return;
        int offset = 0;
        if (uv_stream_get_write_queue_size(stream) == 0) {
            uv_buf_t direct = uv_buf_init(scratch, (unsigned)n);
            int written = uv_try_write(stream, &direct, 1);
            if (written == n) continue;
            if (written > 0) offset = written;
            else if (written != UV_EAGAIN) return;
        }
        owned_write *w = take_chunk();
        memcpy(w->data, scratch + offset, (size_t)(n - offset));
        uv_buf_t buf = uv_buf_init(w->data, (unsigned)(n - offset));
        uv_write(&w->req, stream, &buf, 1, cb ? cb : on_owned_written);
    }
}

static peer *new_peer(uv_loop_t *loop, SSL_CTX *ctx, int tls, int server) {
    peer *p = calloc(1, sizeof *p);
    uv_tcp_init(loop, &p->tcp);
    uv_tcp_nodelay(&p->tcp, 1);
    p->tcp.data = p;
    p->read_allocation = aligned_alloc(4096, READ_BUFFER + READ_BUFFER_PAGE_OFFSET);
    p->read_buffer = p->read_allocation + READ_BUFFER_PAGE_OFFSET;
    if (tls) {
        p->ssl = SSL_new(ctx);
        p->rbio = BIO_new(BIO_s_mem());
        p->wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(p->ssl, p->rbio, p->wbio);
        if (server) SSL_set_accept_state(p->ssl); else SSL_set_connect_state(p->ssl);
    }
    return p;
}

static uint64_t now_ns(void) { return uv_hrtime(); }

/* ---- server ---- */

static void server_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    peer *p = stream->data;
    server_state *s = p->server;
    if (nread < 0) {
        if (!p->handshaken || s->tls == 0) {}
        uv_close((uv_handle_t *)stream, free_peer);
        return;
    }
    if (nread == 0) return;
    if (!s->tls) {
        uint64_t t = now_ns();
        if (s->first_ns == 0) s->first_ns = t;
        s->last_ns = t;
        s->bytes += (uint64_t)nread;
        return;
    }
    BIO_write(p->rbio, buf->base, (int)nread);
    if (!p->handshaken) {
        int r = SSL_do_handshake(p->ssl);
        flush_tls(p, NULL);
        if (r != 1) {
            int e = SSL_get_error(p->ssl, r);
            if (e != SSL_ERROR_WANT_READ) { ERR_clear_error(); uv_close((uv_handle_t *)stream, free_peer); }
            return;
        }
        p->handshaken = 1;
        s->handshakes++;
    }
    static char plain[64 * 1024];
    for (;;) {
        int n = SSL_read(p->ssl, plain, sizeof plain);
        if (n <= 0) break;
        uint64_t t = now_ns();
        if (s->first_ns == 0) s->first_ns = t;
        s->last_ns = t;
        s->bytes += (uint64_t)n;
    }
    flush_tls(p, NULL);
}

static void server_accept(uv_stream_t *listener, int status) {
    if (status != 0) return;
    server_state *s = listener->data;
    peer *p = new_peer(&s->loop, s->ctx, s->tls, 1);
    p->server = s;
    if (uv_accept(listener, (uv_stream_t *)&p->tcp) != 0) { uv_close((uv_handle_t *)&p->tcp, free_peer); return; }
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, server_read);
}

static void close_any(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (!uv_is_closing(handle)) {
        if (handle->type == UV_TCP && handle->data != NULL && handle->data != handle->loop->data) uv_close(handle, free_peer);
        else uv_close(handle, NULL);
    }
}

static void server_stop(uv_async_t *async) { uv_walk(async->loop, close_any, NULL); }

static int bound_server_cpu = -1, bound_client_cpu = -1;

void taps_baseline_bind_cpus(int server_cpu, int client_cpu) {
    bound_server_cpu = server_cpu;
    bound_client_cpu = client_cpu;
}

static void bind_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void baseline_bind_server_thread(const char *name) {
    if (bound_server_cpu >= 0) bind_to_cpu(bound_server_cpu);
    pthread_setname_np(pthread_self(), name);  /* told apart from Taps' loops under perf */
}

/* The client loop runs on the caller's thread: named for perf and bound while it runs. */
static __thread char caller_name[16];
static __thread cpu_set_t caller_cpus;

void baseline_client_thread_begin(void) {
    pthread_getname_np(pthread_self(), caller_name, sizeof caller_name);
    pthread_setname_np(pthread_self(), "base-client");
    pthread_getaffinity_np(pthread_self(), sizeof caller_cpus, &caller_cpus);
    if (bound_client_cpu >= 0) bind_to_cpu(bound_client_cpu);
}

void baseline_client_thread_end(void) {
    pthread_setname_np(pthread_self(), caller_name);
    pthread_setaffinity_np(pthread_self(), sizeof caller_cpus, &caller_cpus);
}

void baseline_thread_start(baseline_thread *thread, void *(*body)(void *), void *arg) {
    pthread_mutex_init(&thread->lock, NULL);
    pthread_cond_init(&thread->ready, NULL);
    pthread_create(&thread->id, NULL, body, arg);
    pthread_mutex_lock(&thread->lock);
    while (!thread->started) pthread_cond_wait(&thread->ready, &thread->lock);
    pthread_mutex_unlock(&thread->lock);
}

void baseline_thread_listening(baseline_thread *thread, const struct sockaddr_storage *bound) {
    pthread_mutex_lock(&thread->lock);
    thread->port = ntohs(((const struct sockaddr_in *)bound)->sin_port);
    thread->started = 1;
    pthread_cond_signal(&thread->ready);
    pthread_mutex_unlock(&thread->lock);
}

void baseline_thread_join(baseline_thread *thread) {
    pthread_join(thread->id, NULL);
    pthread_mutex_destroy(&thread->lock);
    pthread_cond_destroy(&thread->ready);
}

static void *server_thread(void *arg) {
    server_state *s = arg;
    baseline_bind_server_thread("base-server");
    uv_loop_init(&s->loop);
    s->loop.data = s;
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    uv_async_init(&s->loop, &s->stopper, server_stop);
    s->stopper.data = s;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
    uv_listen((uv_stream_t *)&s->listener, 128, server_accept);
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    baseline_thread_listening(&s->thread, &bound);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return NULL;
}

/* ---- client ---- */

static void client_connect(client_state *c);
static void pump(peer *p);

static void on_message_written(uv_write_t *req, int status) {
    peer *p = req->data;
    free(req);
    if (status == 0 && p->client && !p->client->stopping) pump(p);
}

static void on_tls_written(uv_write_t *req, int status) {
    owned_write *w = (owned_write *)req;
    peer *p = w->req.handle->data;
    recycle_chunk(w);
    if (status == 0 && p->client && !p->client->stopping) pump(p);
}

/* Keeps up to WRITE_HIGH_WATER(tls) bytes queued in libuv until the deadline. */
static void pump(peer *p) {
    client_state *c = p->client;
    uv_stream_t *stream = (uv_stream_t *)&p->tcp;
    while (uv_stream_get_write_queue_size(stream) < WRITE_HIGH_WATER(c->tls)) {
        if (now_ns() >= c->deadline_ns) {
            c->stopping = 1;
            if (c->tls) { SSL_shutdown(p->ssl); flush_tls(p, NULL); }
            uv_close((uv_handle_t *)&p->tcp, free_peer);
            return;
        }
        if (c->tls) {
            SSL_write(p->ssl, c->message, (int)c->message_size);
            flush_tls(p, on_tls_written);
        } else {
            uv_write_t *req = malloc(sizeof *req);
            req->data = p;
            uv_buf_t buf = uv_buf_init(c->message, (unsigned)c->message_size);
            uv_write(req, stream, &buf, 1, on_message_written);
        }
    }
}

static void established(peer *p) {
    client_state *c = p->client;
    if (c->handshake_mode) {
        c->handshakes++;
        uv_close((uv_handle_t *)&p->tcp, free_peer);
        if (now_ns() < c->deadline_ns) client_connect(c);
        return;
    }
    pump(p);
}

static void client_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    peer *p = stream->data;
    if (nread < 0) { uv_close((uv_handle_t *)stream, free_peer); return; }
    if (nread == 0 || !p->client->tls) return;
    BIO_write(p->rbio, buf->base, (int)nread);
    if (!p->handshaken) {
        int r = SSL_do_handshake(p->ssl);
        flush_tls(p, NULL);
        if (r == 1) { p->handshaken = 1; established(p); return; }
        if (SSL_get_error(p->ssl, r) != SSL_ERROR_WANT_READ) { p->client->error = 2; uv_close((uv_handle_t *)stream, free_peer); }
        return;
    }
    static char plain[16384];
    while (SSL_read(p->ssl, plain, sizeof plain) > 0) {}
}

static void on_connected(uv_connect_t *req, int status) {
    peer *p = req->data;
    free(req);
    if (status != 0) { p->client->error = 1; uv_close((uv_handle_t *)&p->tcp, free_peer); return; }
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, client_read);
    if (p->client->tls) {
        SSL_do_handshake(p->ssl);
        flush_tls(p, NULL);
    } else {
        established(p);
    }
}

static void client_connect(client_state *c) {
    peer *p = new_peer(&c->loop, c->ctx, c->tls, 0);
    p->client = c;
    if (c->tls) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(p->ssl), "127.0.0.1");
    }
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", c->port, &addr);
    uv_connect_t *req = malloc(sizeof *req);
    req->data = p;
    uv_tcp_connect(req, &p->tcp, (const struct sockaddr *)&addr, on_connected);
}

SSL_CTX *baseline_make_ctx(int server, const char *cert, const char *key) {
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (server) {
        SSL_CTX_use_certificate_chain_file(ctx, cert);
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_load_verify_locations(ctx, cert, NULL);
        /* Like the Swift client: a fresh handshake each time (no resumption in handshake mode). */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

/* Starts the server thread; returns once it listens (its port in `port`). */
static server_state *start_server(int tls, const char *cert, const char *key) {
    server_state *s = calloc(1, sizeof *s);
    s->tls = tls;
    if (tls) s->ctx = baseline_make_ctx(1, cert, key);
    baseline_thread_start(&s->thread, server_thread, s);
    return s;
}

/* Lets the server drain what is in flight, stops it and reports what it received. */
static taps_baseline_result finish_server(server_state *s) {
    taps_baseline_result result = {0};
    uv_sleep(200);
    uv_async_send(&s->stopper);
    baseline_thread_join(&s->thread);
    result.bytes = s->bytes;
    if (s->last_ns > s->first_ns) result.megabytes_per_second = (double)s->bytes / ((double)(s->last_ns - s->first_ns) / 1e9) / 1e6;
    if (s->ctx) SSL_CTX_free(s->ctx);
    free(s);
    return result;
}

/* Runs the client on the caller's thread until `seconds` have passed: bulk sends, or sequential
 * establishments in handshake mode. Returns handshakes per second there, 0 otherwise. */
static double run_client(int tls, int port, int handshake_mode, double seconds, size_t message_size,
                         const char *cert, int *error) {
    client_state c = {0};
    c.tls = tls;
    c.port = port;
    c.handshake_mode = handshake_mode;
    c.message_size = message_size;
    char *message_allocation = aligned_alloc(4096, message_size + MESSAGE_PAGE_OFFSET + 4096);
    c.message = message_allocation + MESSAGE_PAGE_OFFSET;
    memset(c.message, 'x', message_size);
    if (tls) c.ctx = baseline_make_ctx(0, cert, NULL);
    uv_loop_init(&c.loop);
    baseline_client_thread_begin();
    c.started_ns = now_ns();
    c.deadline_ns = c.started_ns + (uint64_t)(seconds * 1e9);
    client_connect(&c);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uint64_t client_elapsed = now_ns() - c.started_ns;
    uv_loop_close(&c.loop);
    baseline_client_thread_end();
    *error = c.error;
    if (c.ctx) SSL_CTX_free(c.ctx);
    free(message_allocation);
    return handshake_mode ? (double)c.handshakes / ((double)client_elapsed / 1e9) : 0;
}

static taps_baseline_result run(int tls, int handshake_mode, double seconds, size_t message_size,
                                const char *cert, const char *key) {
    server_state *s = start_server(tls, cert, key);
    int error = 0;
    double handshakes = run_client(tls, s->thread.port, handshake_mode, seconds, message_size, cert, &error);
    taps_baseline_result result = finish_server(s);
    result.error = error;
    result.handshakes_per_second = handshakes;
    return result;
}

taps_baseline_result taps_baseline_bulk(int tls, double seconds, size_t message_size, const char *cert, const char *key) {
    return run(tls, 0, seconds, message_size, cert, key);
}

taps_baseline_result taps_baseline_handshakes(int tls, double seconds, const char *cert, const char *key) {
    return run(tls, 1, seconds, 0, cert, key);
}

taps_baseline_server *taps_baseline_server_start(int tls, const char *cert, const char *key, int *port) {
    server_state *s = start_server(tls, cert, key);
    *port = s->thread.port;
    return (taps_baseline_server *)s;
}

taps_baseline_result taps_baseline_server_finish(taps_baseline_server *server) {
    return finish_server((server_state *)server);
}

int taps_baseline_send(int tls, int port, double seconds, size_t message_size, const char *cert) {
    int error = 0;
    run_client(tls, port, 0, seconds, message_size, cert, &error);
    return error;
}

void taps_baseline_trim_heap(void) { malloc_trim(0); }

int taps_baseline_make_identity(const char *cert_path, const char *key_path, int rsa_bits) {
    EVP_PKEY *key = rsa_bits > 0 ? EVP_RSA_gen((unsigned int)rsa_bits) : EVP_EC_gen("P-256");
    if (!key) return -1;
    X509 *cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"taps-bench", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(cert, bc, -1);
    X509_EXTENSION_free(bc);
    X509_sign(cert, key, EVP_sha256());
    FILE *f = fopen(cert_path, "w");
    if (!f) return -1;
    PEM_write_X509(f, cert);
    fclose(f);
    f = fopen(key_path, "w");
    if (!f) return -1;
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;
}
