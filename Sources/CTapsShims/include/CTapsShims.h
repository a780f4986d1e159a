#ifndef C_TAPS_SHIMS_H
#define C_TAPS_SHIMS_H

/* One-line wrappers around OpenSSL macros that Swift cannot import. Each does exactly what the macro
 * of the same name does; nothing else lives here. */

#include <openssl/ssl.h>
#include <openssl/bio.h>

int taps_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
int taps_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
int taps_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
int taps_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list);
long taps_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
long taps_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);
long taps_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes);
long taps_BIO_set_mem_eof_return(BIO *bio, int value);
X509 *taps_SSL_get_peer_certificate(const SSL *ssl);
long taps_DTLS_get_timeout_ms(SSL *ssl);
int taps_DTLS_handle_timeout(SSL *ssl);
long taps_SSL_set_mtu(SSL *ssl, long mtu);
long taps_SSL_set_options_no_query_mtu(SSL *ssl);
int taps_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *cert);
int taps_ERR_reason(unsigned long code);
void taps_BIO_set_retry_read(BIO *bio);
void taps_BIO_clear_retry_flags(BIO *bio);
/* Writes the oldest queued OpenSSL error's text into buffer and clears the queue; returns the error code. */
unsigned long taps_ERR_drain(char *buffer, size_t length);

int taps_SSL_CTX_set1_sigalgs_list(SSL_CTX *ctx, const char *list);
int taps_SSL_get_negotiated_group(SSL *ssl);

/* SNI on the server: the callback and its argument are set through macros. */
typedef int (*taps_servername_cb)(SSL *ssl, int *alert, void *arg);
void taps_SSL_CTX_set_servername_callback(SSL_CTX *ctx, taps_servername_cb cb, void *arg);

/* SSL_OP_COOKIE_EXCHANGE is a macro built from SSL_OP_BIT. */
void taps_SSL_CTX_enable_cookie_exchange(SSL_CTX *ctx);

/* EVP_EC_gen is a macro over a variadic function. */
EVP_PKEY *taps_EVP_EC_gen(const char *curve);

/* Names the calling thread (pthread_setname_np needs _GNU_SOURCE, which Swift does not set). */
void taps_set_thread_name(const char *name);
/* Binds the calling thread to one CPU (CPU_SET is a macro); 0 or an errno value. */
int taps_bind_thread_to_cpu(int cpu);
/* The one CPU the calling thread is bound to, or -1 when it may run on several. */
int taps_thread_bound_cpu(void);
/* Ignores SIGPIPE unless the application installed a handler of its own: libuv writes with
 * write(2), so a write to a connection the peer reset would otherwise end the process. */
void taps_ignore_sigpipe_unless_handled(void);
/* accept4 with close-on-exec (and non-blocking when asked), without the peer's address: Swift
 * imports accept4's address parameter as glibc's transparent union, which takes no null. */
int taps_accept(int fd, int nonblocking);
int taps_sigpipe_is_ignored(void);

/* glibc: lets a thread's heap keep up to 8 MB of freed memory instead of 128 KB, by glibc's own
 * dynamic threshold (mallopt(3), M_MMAP_THRESHOLD): freeing an mmapped block raises the mmap
 * threshold to its size and the trim threshold to twice that. Does nothing where the application
 * fixed the thresholds itself (mallopt or GLIBC_TUNABLES), or without glibc. */
void taps_keep_freed_heap_memory(void);

/* Session cache size, the no-(EC)DHE PSK option, chain certificates per connection, and the retry
 * after an asynchronous verification are macros too. */
long taps_SSL_CTX_sess_set_cache_size(SSL_CTX *ctx, long size);
void taps_SSL_CTX_allow_no_dhe_kex(SSL_CTX *ctx);
int taps_SSL_add1_chain_cert(SSL *ssl, X509 *cert);
int taps_SSL_set_retry_verify(SSL *ssl);
/* SSL_OP_NO_TICKET is built from the SSL_OP_BIT macro; returns the options now set. */
uint64_t taps_SSL_CTX_disable_session_tickets(SSL_CTX *ctx);
/* Turns off TLS 1.3's middlebox compatibility mode (RFC 8446 appendix D.4) on one connection. */
void taps_SSL_disable_middlebox_compat(SSL *ssl);

/* CRC32c (Castagnoli) with the SSE4.2 crc32 instruction; taps_crc32c_hardware() says whether this CPU
 * has it. Same result as usrsctp_crc32c. */
#include <stddef.h>
#include <stdint.h>
int taps_crc32c_hardware(void);
uint32_t taps_crc32c(const void *data, size_t length);
/* The CRC32c of an SCTP packet (at least 12 bytes) with its checksum field (bytes 8-11) taken as zero
 * (RFC 9260 section 6.8), without copying the packet. */
uint32_t taps_crc32c_sctp(const void *packet, size_t length);

#endif
