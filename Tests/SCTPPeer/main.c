/* An independent SCTP-over-UDP peer for interop tests: usrsctp's own UDP encapsulation (RFC 6951,
 * usrsctp_init with a UDP port, its receive and timer threads, IPv4 sockets), not the Taps stack's
 * AF_CONN packet path. Messages are small text; each line it prints is flushed at once.
 *
 * usage:
 *   taps-sctp-peer echo UDP_PORT SCTP_PORT
 *       listens on 127.0.0.1, prints "ready", and echoes every message of one association back on
 *       its stream with its PPID, printing "got stream S ppid P TEXT", until the peer shuts down.
 *   taps-sctp-peer send UDP_PORT REMOTE_UDP_PORT SCTP_PORT TEXT...
 *       connects to 127.0.0.1:SCTP_PORT through REMOTE_UDP_PORT, sends TEXT number i on stream i with
 *       PPID 50+i, prints each reply as "reply stream S ppid P TEXT", then shuts down.
 *   taps-sctp-peer hold UDP_PORT REMOTE_UDP_PORT SCTP_PORT LOCAL_SCTP_PORT TEXT...
 *       the same from SCTP port LOCAL_SCTP_PORT, then prints "holding" and keeps the association
 *       until killed (a test kills it without ABORT and starts it again: an SCTP restart).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "shim.h" /* usrsctp.h, with the address families it is built for */

static int fail(const char *what) {
    printf("error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

static void enable(struct socket *s, int option) {
    int on = 1;
    usrsctp_setsockopt(s, IPPROTO_SCTP, option, &on, sizeof on);
}

static struct sockaddr_in loopback(uint16_t port) {
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

/* One whole message (they are small here); 0 at the peer's shutdown, -1 on error. */
static ssize_t receive(struct socket *s, char *buffer, size_t capacity, struct sctp_rcvinfo *info) {
    for (;;) {
        socklen_t length = sizeof *info;
        unsigned int type = 0;
        int flags = 0;
        ssize_t n = usrsctp_recvv(s, buffer, capacity - 1, NULL, NULL, info, &length, &type, &flags);
        if (n <= 0) return n;
        if (flags & MSG_NOTIFICATION) continue;
        buffer[n] = 0;
        return n;
    }
}

static int send_on(struct socket *s, const char *text, size_t length, uint16_t stream, uint32_t ppid_network) {
    struct sctp_sndinfo info;
    memset(&info, 0, sizeof info);
    info.snd_sid = stream;
    info.snd_ppid = ppid_network;
    return usrsctp_sendv(s, text, length, NULL, 0, &info, sizeof info, SCTP_SENDV_SNDINFO, 0) < 0 ? -1 : 0;
}

static int echo(uint16_t sctp_port) {
    struct socket *listener = usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
    if (listener == NULL) return fail("socket");
    enable(listener, SCTP_RECVRCVINFO);
    enable(listener, SCTP_NODELAY);
    struct sockaddr_in address = loopback(sctp_port);
    if (usrsctp_bind(listener, (struct sockaddr *)&address, sizeof address) != 0) return fail("bind");
    if (usrsctp_listen(listener, 1) != 0) return fail("listen");
    printf("ready\n");
    fflush(stdout);
    struct socket *connection = usrsctp_accept(listener, NULL, NULL);
    if (connection == NULL) return fail("accept");
    char buffer[65536];
    struct sctp_rcvinfo info;
    ssize_t n;
    while ((n = receive(connection, buffer, sizeof buffer, &info)) > 0) {
        printf("got stream %u ppid %u %s\n", info.rcv_sid, ntohl(info.rcv_ppid), buffer);
        fflush(stdout);
        if (send_on(connection, buffer, (size_t)n, info.rcv_sid, info.rcv_ppid) != 0) return fail("send");
    }
    printf("closed\n");
    fflush(stdout);
    usrsctp_close(connection);
    usrsctp_close(listener);
    return 0;
}

static int send_texts(uint16_t remote_udp_port, uint16_t sctp_port, uint16_t local_sctp_port, int hold, char **texts, int count) {
    struct socket *s = usrsctp_socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP, NULL, NULL, 0, NULL);
    if (s == NULL) return fail("socket");
    enable(s, SCTP_RECVRCVINFO);
    enable(s, SCTP_NODELAY);
    if (local_sctp_port != 0) {
        struct sockaddr_in local = loopback(local_sctp_port);
        if (usrsctp_bind(s, (struct sockaddr *)&local, sizeof local) != 0) return fail("bind");
    }
    struct sctp_udpencaps encapsulation;
    memset(&encapsulation, 0, sizeof encapsulation);
    encapsulation.sue_address.ss_family = AF_INET;
    encapsulation.sue_port = htons(remote_udp_port);
    if (usrsctp_setsockopt(s, IPPROTO_SCTP, SCTP_REMOTE_UDP_ENCAPS_PORT, &encapsulation, sizeof encapsulation) != 0) {
        return fail("SCTP_REMOTE_UDP_ENCAPS_PORT");
    }
    struct sockaddr_in address = loopback(sctp_port);
    if (usrsctp_connect(s, (struct sockaddr *)&address, sizeof address) != 0) return fail("connect");
    char buffer[65536];
    for (int i = 0; i < count; i++) {
        if (send_on(s, texts[i], strlen(texts[i]), (uint16_t)i, htonl(50 + (uint32_t)i)) != 0) return fail("send");
        struct sctp_rcvinfo info;
        ssize_t n = receive(s, buffer, sizeof buffer, &info);
        if (n <= 0) return fail("receive");
        printf("reply stream %u ppid %u %s\n", info.rcv_sid, ntohl(info.rcv_ppid), buffer);
        fflush(stdout);
    }
    if (hold) {
        printf("holding\n");
        fflush(stdout);
        for (;;) pause();
    }
    usrsctp_shutdown(s, SHUT_WR);
    struct sctp_rcvinfo info;
    while (receive(s, buffer, sizeof buffer, &info) > 0) {}
    usrsctp_close(s);
    printf("done\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "echo") == 0) {
        usrsctp_init((uint16_t)atoi(argv[2]), NULL, NULL);
        int status = echo((uint16_t)atoi(argv[3]));
        _exit(status); /* usrsctp_finish would wait for its threads; nothing is left to do */
    }
    if (argc >= 6 && strcmp(argv[1], "send") == 0) {
        usrsctp_init((uint16_t)atoi(argv[2]), NULL, NULL);
        int status = send_texts((uint16_t)atoi(argv[3]), (uint16_t)atoi(argv[4]), 0, 0, argv + 5, argc - 5);
        _exit(status);
    }
    if (argc >= 7 && strcmp(argv[1], "hold") == 0) {
        usrsctp_init((uint16_t)atoi(argv[2]), NULL, NULL);
        int status = send_texts((uint16_t)atoi(argv[3]), (uint16_t)atoi(argv[4]), (uint16_t)atoi(argv[5]), 1, argv + 6, argc - 6);
        _exit(status);
    }
    fprintf(stderr, "usage: %s echo UDP_PORT SCTP_PORT | send UDP_PORT REMOTE_UDP_PORT SCTP_PORT TEXT...\n"
                    "       | hold UDP_PORT REMOTE_UDP_PORT SCTP_PORT LOCAL_SCTP_PORT TEXT...\n", argv[0]);
    return 2;
}
