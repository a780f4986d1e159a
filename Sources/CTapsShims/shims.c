#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "CTapsShims.h"
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/evp.h>
#include <openssl/ec.h>

int taps_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
int taps_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_max_proto_version(ctx, version); }
int taps_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
int taps_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
long taps_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
long taps_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
long taps_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes) { return SSL_CTX_set_read_ahead(ctx, yes); }
long taps_BIO_set_mem_eof_return(BIO *bio, int value) { return BIO_set_mem_eof_return(bio, value); }
X509 *taps_SSL_get_peer_certificate(const SSL *ssl) { return SSL_get1_peer_certificate(ssl); }

long taps_DTLS_get_timeout_ms(SSL *ssl) {
    struct timeval tv;
    if (!DTLSv1_get_timeout(ssl, &tv)) return -1;
    return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int taps_DTLS_handle_timeout(SSL *ssl) { return (int)DTLSv1_handle_timeout(ssl); }
long taps_SSL_set_mtu(SSL *ssl, long mtu) { return SSL_set_mtu(ssl, mtu); }
long taps_SSL_set_options_no_query_mtu(SSL *ssl) { return (long)SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU); }

unsigned long taps_ERR_drain(char *buffer, size_t length) {
    unsigned long first = ERR_get_error();
    if (first != 0 && buffer != NULL && length > 0) ERR_error_string_n(first, buffer, length);
    else if (buffer != NULL && length > 0) buffer[0] = 0;
    ERR_clear_error();
    return first;
}

int taps_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert) { return (int)SSL_CTX_add1_chain_cert(ctx, cert); }
int taps_ERR_reason(unsigned long code) { return ERR_GET_REASON(code); }
void taps_BIO_set_retry_read(BIO *bio) { BIO_set_retry_read(bio); }
void taps_BIO_clear_retry_flags(BIO *bio) { BIO_clear_retry_flags(bio); }

void taps_set_thread_name(const char *name) { pthread_setname_np(pthread_self(), name); }
int taps_bind_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}
int taps_thread_bound_cpu(void) {
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0 || CPU_COUNT(&set) != 1) return -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) if (CPU_ISSET(cpu, &set)) return cpu;
    return -1;
}
EVP_PKEY *taps_EVP_EC_gen(const char *curve) { return EVP_EC_gen(curve); }
void taps_SSL_CTX_enable_cookie_exchange(SSL_CTX *ctx) { SSL_CTX_set_options(ctx, SSL_OP_COOKIE_EXCHANGE); }
int taps_SSL_CTX_set1_sigalgs_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_sigalgs_list(ctx, list); }
int taps_SSL_get_negotiated_group(SSL *ssl) { return (int)SSL_get_negotiated_group(ssl); }
void taps_SSL_CTX_set_servername_callback(SSL_CTX *ctx, taps_servername_cb cb, void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

long taps_SSL_CTX_sess_set_cache_size(SSL_CTX *ctx, long size) { return SSL_CTX_sess_set_cache_size(ctx, size); }
void taps_SSL_CTX_allow_no_dhe_kex(SSL_CTX *ctx) { SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX); }
int taps_SSL_add1_chain_cert(SSL *ssl, X509 *cert) { return (int)SSL_add1_chain_cert(ssl, cert); }
int taps_SSL_set_retry_verify(SSL *ssl) { return SSL_set_retry_verify(ssl); }
uint64_t taps_SSL_CTX_disable_session_tickets(SSL_CTX *ctx) { return SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET); }
void taps_SSL_disable_middlebox_compat(SSL *ssl) { SSL_clear_options(ssl, SSL_OP_ENABLE_MIDDLEBOX_COMPAT); }

#if defined(__x86_64__)
#include <nmmintrin.h>
int taps_crc32c_hardware(void) { return __builtin_cpu_supports("sse4.2"); }

/* The running CRC (not inverted) over `length` more bytes. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_update(uint32_t crc, const uint8_t *bytes, size_t length) {
    uint64_t wide = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        wide = _mm_crc32_u64(wide, word);
        bytes += 8;
        length -= 8;
    }
    crc = (uint32_t)wide;
    while (length-- > 0) crc = _mm_crc32_u8(crc, *bytes++);
    return crc;
}

__attribute__((target("sse4.2"))) uint32_t taps_crc32c(const void *data, size_t length) {
    return ~crc32c_update(0xffffffffu, data, length);
}

__attribute__((target("sse4.2"))) uint32_t taps_crc32c_sctp(const void *packet, size_t length) {
    if (length < 12) return 0;
    const uint8_t *bytes = packet;
    uint32_t crc = crc32c_update(0xffffffffu, bytes, 8);
    crc = _mm_crc32_u32(crc, 0); /* the checksum field, as zero */
    return ~crc32c_update(crc, bytes + 12, length - 12);
}
#else
int taps_crc32c_hardware(void) { return 0; }
uint32_t taps_crc32c(const void *data, size_t length) { (void)data; (void)length; return 0; }
uint32_t taps_crc32c_sctp(const void *packet, size_t length) { (void)packet; (void)length; return 0; }
#endif

void taps_ignore_sigpipe_unless_handled(void) {
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

void *volatile taps_heap_probe;

void taps_keep_freed_heap_memory(void) {
#ifdef __GLIBC__
    /* 4 MB is above the initial 128 KB mmap threshold, so malloc maps it and free raises both
       thresholds (to 4 and 8 MB); the volatile store keeps the compiler from eliding the pair. */
    taps_heap_probe = malloc(4 * 1024 * 1024);
    free(taps_heap_probe);
    taps_heap_probe = NULL;
#endif
}

int taps_sigpipe_is_ignored(void) {
    struct sigaction current;
    return sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_IGN;
}

int taps_accept(int fd, int nonblocking) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0));
}
