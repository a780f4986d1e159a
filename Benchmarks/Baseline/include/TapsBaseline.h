#ifndef TAPS_BASELINE_H
#define TAPS_BASELINE_H

#include <stddef.h>
#include <stdint.h>

/* The benchmark's baseline: the same transfers as taps-bench, written directly on libuv and
 * OpenSSL, with no framework in between. A server loop thread and a client loop thread on
 * 127.0.0.1, like the Swift side. */

typedef struct {
    double megabytes_per_second;   /* MB/s (10^6 bytes) as the server received them */
    double handshakes_per_second;  /* handshake mode only */
    uint64_t bytes;
    int error;                     /* 0, or a libuv / OpenSSL failure */
} taps_baseline_result;

/* Bulk transfer for `seconds`: `tls` selects TLS over TCP (TLS 1.3, AES-GCM) or plain TCP. */
taps_baseline_result taps_baseline_bulk(int tls, double seconds, size_t message_size,
                                        const char *cert_pem, const char *key_pem);

/* Sequential connection establishments (TCP connect, TLS handshake if `tls`) for `seconds`. */
taps_baseline_result taps_baseline_handshakes(int tls, double seconds, const char *cert_pem, const char *key_pem);

/* The two halves on their own, to pair one with the Swift side (taps-bench --mixed): a server
 * thread counting what arrives, and a client on the caller's thread sending for `seconds`. */
typedef struct taps_baseline_server taps_baseline_server;
taps_baseline_server *taps_baseline_server_start(int tls, const char *cert_pem, const char *key_pem, int *port);
/* Waits 200 ms for what is in flight, stops the server and reports what it received. */
taps_baseline_result taps_baseline_server_finish(taps_baseline_server *server);
/* Returns 0, or the client's failure. */
int taps_baseline_send(int tls, int port, double seconds, size_t message_size, const char *cert_pem);

/* Datagrams of `message_size` bytes sent on a connected UDP socket for `seconds` (up to 64 sends
 * queued in libuv), counted by a receiver thread: MB/s as received, first to last datagram. */
typedef struct {
    double megabytes_per_second;
    uint64_t sent;       /* datagrams the socket took */
    uint64_t received;   /* datagrams the receiver got (the rest the kernel dropped) */
    uint64_t bytes;
    int error;
} taps_baseline_datagram_result;
taps_baseline_datagram_result taps_baseline_udp(double seconds, size_t message_size);

/* Round trips of one `message_size`-byte message at a time, echoed by a server thread, for
 * `seconds`: mode 0 TCP, 1 TLS over TCP, 2 UDP. Writes each round trip's time in nanoseconds to
 * `samples` (at most `capacity`) and returns how many, or a negative failure. */
long taps_baseline_latency(int mode, double seconds, size_t message_size, const char *cert, const char *key,
                           uint64_t *samples, size_t capacity);

/* Binds the server thread and the client thread (the caller's, for the run) to these CPUs in
 * later runs, as taps-bench binds its two loops; -1 leaves a side unbound. */
void taps_baseline_bind_cpus(int server_cpu, int client_cpu);

/* Hands freed heap memory back to the system (malloc_trim), so that a resident-set figure counts
 * only memory in use. */
void taps_baseline_trim_heap(void);

/* Writes a self-signed certificate for 127.0.0.1 / localhost and its key as PEM files: P-256, or
 * RSA of rsa_bits bits when that is above 0. */
int taps_baseline_make_identity(const char *cert_path, const char *key_path, int rsa_bits);

#endif
