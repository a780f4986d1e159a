/* The C baseline of taps-bench's udp throughput: datagrams of one size sent on libuv as fast as the
 * socket takes them, counted by a receiver on its own loop thread. */
#define _GNU_SOURCE
#include "TapsBaseline.h"
#include "BaselineInternal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Sends in flight in libuv at once (each a whole datagram), as a Taps udp connection queues up
 * to its send high-water mark. */
#define DATAGRAMS_IN_FLIGHT 64
#define RECEIVE_BUFFER (64u * 1024u)

typedef struct {
    uv_loop_t loop;
    uv_udp_t udp;
    uv_async_t stopper;
    uint64_t bytes, datagrams;
    uint64_t first_ns, last_ns;
    char buffer[RECEIVE_BUFFER];
    baseline_thread thread;
} datagram_sink;

typedef struct {
    uv_loop_t loop;
    uv_udp_t udp;
    uv_udp_send_t requests[DATAGRAMS_IN_FLIGHT];
    uv_udp_send_t *free_requests[DATAGRAMS_IN_FLIGHT];
    int free_count;
    char *message;
    size_t size;
    uint64_t deadline_ns;
    uint64_t sent;
    int stopping;
    int error;
} datagram_source;

static void alloc_sink(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    datagram_sink *s = handle->data;
    *buf = uv_buf_init(s->buffer, RECEIVE_BUFFER);
}

static void sink_read(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags) {
    (void)buf; (void)from; (void)flags;
    if (nread <= 0) return;
    datagram_sink *s = udp->data;
    uint64_t now = uv_hrtime();
    if (s->first_ns == 0) s->first_ns = now;
    s->last_ns = now;
    s->bytes += (uint64_t)nread;
    s->datagrams++;
}

static void close_sink_handle(uv_handle_t *handle, void *arg) {
    (void)arg;
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

static void sink_stop(uv_async_t *async) { uv_walk(async->loop, close_sink_handle, NULL); }

static void *sink_thread(void *arg) {
    datagram_sink *s = arg;
    baseline_bind_server_thread("base-sink");
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->stopper, sink_stop);
    uv_udp_init(&s->loop, &s->udp);
    s->udp.data = s;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_udp_bind(&s->udp, (const struct sockaddr *)&addr, 0);
    uv_udp_recv_start(&s->udp, alloc_sink, sink_read);
    struct sockaddr_storage bound;
    int length = sizeof bound;
    uv_udp_getsockname(&s->udp, (struct sockaddr *)&bound, &length);
    baseline_thread_listening(&s->thread, &bound);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return NULL;
}

static void pump_datagrams(datagram_source *c);

static void datagram_sent(uv_udp_send_t *req, int status) {
    datagram_source *c = req->data;
    c->free_requests[c->free_count++] = req;
    if (status == 0) c->sent++; else c->error = 1;
    pump_datagrams(c);
}

static void pump_datagrams(datagram_source *c) {
    if (c->stopping) {
        if (c->free_count == DATAGRAMS_IN_FLIGHT && !uv_is_closing((uv_handle_t *)&c->udp)) uv_close((uv_handle_t *)&c->udp, NULL);
        return;
    }
    while (c->free_count > 0) {
        if (uv_hrtime() >= c->deadline_ns || c->error) {
            c->stopping = 1;
            pump_datagrams(c);
            return;
        }
        uv_udp_send_t *req = c->free_requests[--c->free_count];
        req->data = c;
        uv_buf_t buf = uv_buf_init(c->message, (unsigned)c->size);
        uv_udp_send(req, &c->udp, &buf, 1, NULL, datagram_sent);
    }
}

taps_baseline_datagram_result taps_baseline_udp(double seconds, size_t message_size) {
    taps_baseline_datagram_result result = {0};
    datagram_sink *s = calloc(1, sizeof *s);
    baseline_thread_start(&s->thread, sink_thread, s);

    datagram_source *c = calloc(1, sizeof *c);
    c->size = message_size;
    c->message = malloc(message_size);
    memset(c->message, 'x', message_size);
    for (int i = 0; i < DATAGRAMS_IN_FLIGHT; i++) c->free_requests[i] = &c->requests[i];
    c->free_count = DATAGRAMS_IN_FLIGHT;
    baseline_client_thread_begin();
    uv_loop_init(&c->loop);
    uv_udp_init(&c->loop, &c->udp);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", s->thread.port, &addr);
    uv_udp_connect(&c->udp, (const struct sockaddr *)&addr);
    c->deadline_ns = uv_hrtime() + (uint64_t)(seconds * 1e9);
    pump_datagrams(c);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    baseline_client_thread_end();

    uv_sleep(200);  /* what is in flight arrives */
    uv_async_send(&s->stopper);
    baseline_thread_join(&s->thread);
    result.sent = c->sent;
    result.received = s->datagrams;
    result.bytes = s->bytes;
    result.error = c->error;
    if (s->last_ns > s->first_ns) result.megabytes_per_second = (double)s->bytes / ((double)(s->last_ns - s->first_ns) / 1e9) / 1e6;
    free(c->message);
    free(c);
    free(s);
    return result;
}
