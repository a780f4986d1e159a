/* The SCTP baseline for taps-bench: the same bulk transfer written directly on usrsctp's own API with
 * its own UDP encapsulation (usrsctp_init with a UDP port, which starts usrsctp's receive and timer
 * threads). As two real endpoints would be, client and server are two processes: this one forks the
 * server before either initialises usrsctp (usrsctp can be initialised once per process). The server
 * binds UDP_PORT+1, the client UDP_PORT; they talk over 127.0.0.1 and the server counts the bytes
 * between its first and last message and hands its figure to the client process through a pipe.
 * usrsctp runs with its defaults but for the buffer sizes and ECN, as the Taps stack sets them.
 *
 * usage: taps-sctp-baseline SECONDS MESSAGE_SIZE MTU UDP_PORT
 * prints: {"mbps": X, "messages": N}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "shim.h" /* usrsctp.h, with the address families it is built for */

#define SCTP_PORT 5001
#define HEADER_OVERHEAD 48 /* IPv6 + UDP, as the Taps side subtracts */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_int(struct socket *s, int level, int option, int value) {
    if (usrsctp_setsockopt(s, level, option, &value, sizeof value) != 0) {
        fprintf(stderr, "setsockopt %d: %s\n", option, strerror(errno));
    }
}

static void set_path_mtu(struct socket *s, int mtu) {
    struct sctp_paddrparams params;
    memset(&params, 0, sizeof params);
    params.spp_assoc_id = SCTP_FUTURE_ASSOC;
    params.spp_address.ss_family = AF_INET; /* INADDR_ANY: every path */
    params.spp_flags = SPP_PMTUD_DISABLE;
    params.spp_pathmtu = (uint32_t)(mtu - HEADER_OVERHEAD);
    if (usrsctp_setsockopt(s, IPPROTO_SCTP, SCTP_PEER_ADDR_PARAMS, &params, sizeof params) != 0) {
        fprintf(stderr, "SCTP_PEER_ADDR_PARAMS: %s\n", strerror(errno));
    }
}

struct server_result {
    struct socket *listener;
    int mtu;
    long long bytes;
    long long messages;
    double first, last;
};

/* Accepts one association and reads until the peer shuts down. */
static void serve(struct server_result *result) {
    struct socket *connection = usrsctp_accept(result->listener, NULL, NULL);
    if (connection == NULL) {
        fprintf(stderr, "accept: %s\n", strerror(errno));
        return;
    }
    set_path_mtu(connection, result->mtu);
    size_t capacity = 1 << 20;
    char *buffer = malloc(capacity);
    for (;;) {
        struct sctp_rcvinfo info;
        socklen_t info_length = sizeof info;
        unsigned int info_type = 0;
        int flags = 0;
        ssize_t n = usrsctp_recvv(connection, buffer, capacity, NULL, NULL, &info, &info_length, &info_type, &flags);
        if (n < 0) fprintf(stderr, "receive: %s\n", strerror(errno));
        if (n <= 0) break;
        if (flags & MSG_NOTIFICATION) continue;
        if (result->bytes == 0) result->first = now_seconds();
        result->bytes += n;
        if (flags & MSG_EOR) result->messages++;
        result->last = now_seconds();
    }
    free(buffer);
    usrsctp_close(connection);
}

static void configure_usrsctp(uint16_t udp_port) {
    usrsctp_init(udp_port, NULL, NULL);
    usrsctp_sysctl_set_sctp_sendspace(4 * 1024 * 1024);
    usrsctp_sysctl_set_sctp_recvspace(4 * 1024 * 1024);
    usrsctp_sysctl_set_sctp_ecn_enable(0);
}

static struct sockaddr_in server_address(void) {
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons(SCTP_PORT);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

/* The server process: listens, tells the client it is ready (one byte on `ready`), receives one
 * association's data and writes its figure to `report`. */
static int run_server(uint16_t udp_port, int mtu, int ready, int report) {
    configure_usrsctp(udp_port);
    struct socket *listener = usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
    struct sockaddr_in address = server_address();
    set_int(listener, IPPROTO_SCTP, SCTP_NODELAY, 1);
    if (usrsctp_bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || usrsctp_listen(listener, 1) != 0) {
        fprintf(stderr, "bind/listen: %s\n", strerror(errno));
        return 1;
    }
    if (write(ready, "r", 1) != 1) return 1;
    struct server_result result = {.listener = listener, .mtu = mtu};
    serve(&result);
    double elapsed = result.last - result.first;
    char line[128];
    int length = snprintf(line, sizeof line, "{\"mbps\": %.1f, \"messages\": %lld}\n",
                          elapsed > 0 ? result.bytes / elapsed / 1e6 : 0.0, result.messages);
    if (write(report, line, (size_t)length) != length) return 1;
    return 0;
}

/* The client process: connects to the server's UDP port and sends for `seconds`. */
static int run_client(uint16_t udp_port, uint16_t server_udp_port, double seconds, size_t message_size, int mtu) {
    configure_usrsctp(udp_port);
    struct socket *client = usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
    set_int(client, IPPROTO_SCTP, SCTP_NODELAY, 1);
    set_int(client, SOL_SOCKET, SO_SNDBUF, 4 * 1024 * 1024);
    struct sctp_udpencaps encapsulation;
    memset(&encapsulation, 0, sizeof encapsulation);
    encapsulation.sue_address.ss_family = AF_INET;
    encapsulation.sue_port = htons(server_udp_port);
    if (usrsctp_setsockopt(client, IPPROTO_SCTP, SCTP_REMOTE_UDP_ENCAPS_PORT, &encapsulation, sizeof encapsulation) != 0) {
        fprintf(stderr, "SCTP_REMOTE_UDP_ENCAPS_PORT: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_in address = server_address();
    if (usrsctp_connect(client, (struct sockaddr *)&address, sizeof address) != 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 1;
    }
    set_path_mtu(client, mtu);

    char *message = malloc(message_size);
    memset(message, 0x78, message_size);
    struct sctp_sndinfo info;
    memset(&info, 0, sizeof info);
    double deadline = now_seconds() + seconds;
    while (now_seconds() < deadline) {
        if (usrsctp_sendv(client, message, message_size, NULL, 0, &info, sizeof info, SCTP_SENDV_SNDINFO, 0) < 0) {
            /* A round whose association failed is not a figure: report it, taps-bench retries. */
            fprintf(stderr, "send: %s\n", strerror(errno));
            return 1;
        }
    }
    usrsctp_shutdown(client, SHUT_WR);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s SECONDS MESSAGE_SIZE MTU UDP_PORT\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    size_t message_size = (size_t)atol(argv[2]);
    int mtu = atoi(argv[3]);
    uint16_t udp_port = (uint16_t)atoi(argv[4]);

    int ready[2], report[2];
    if (pipe(ready) != 0 || pipe(report) != 0) return 1;
    pid_t server = fork();
    if (server < 0) return 1;
    /* usrsctp's threaded stack has been seen to stall an association for good mid-run: both
     * processes (a forked child has no alarm of its own until it sets one) end by SIGALRM well
     * after the run should have, and taps-bench repeats the run. */
    alarm((unsigned)seconds + 30);
    if (server == 0) {
        close(ready[0]);
        close(report[0]);
        int status = run_server((uint16_t)(udp_port + 1), mtu, ready[1], report[1]);
        /* usrsctp_finish waits for associations to go away; the figure is out, so just leave. */
        _exit(status);
    }
    close(ready[1]);
    close(report[1]);
    char byte;
    if (read(ready[0], &byte, 1) != 1) {
        fprintf(stderr, "the server process did not start\n");
        return 1;
    }
    if (run_client(udp_port, (uint16_t)(udp_port + 1), seconds, message_size, mtu) != 0) {
        kill(server, SIGKILL);
        return 1;
    }
    char line[128];
    ssize_t length = read(report[0], line, sizeof line - 1);
    waitpid(server, NULL, 0);
    if (length <= 0) {
        fprintf(stderr, "the server process reported nothing\n");
        return 1;
    }
    line[length] = 0;
    fputs(line, stdout);
    fflush(stdout);
    _exit(0);
}
