/* Creating the API's listening sockets: a unix socket with a mode and group, and TCP. */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Binds and listens on PATH. Refuses when another process is already serving there; a
 * stale socket file is replaced. GROUP (may be NULL) owns the socket. */
int socket_listen_unix(const char *path, mode_t mode, const char *group, int *ret_fd);
/* The one parser of "IPV4:PORT" and "[IPV6]:PORT" (port 0..65535, numeric addresses only). */
int socket_address_parse(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);
unsigned socket_address_port(const struct sockaddr_storage *ss);
/* Its normal form ("127.0.0.1:80", "[::1]:80"); *ret is malloc'd. */
int socket_address_format(const struct sockaddr_storage *ss, char **ret);
bool socket_address_is_loopback(const struct sockaddr_storage *ss);
/* "ADDR:PORT" or "[ADDR]:PORT". A non-loopback ADDR is refused (-EPERM, before binding)
 * unless ALLOW_NON_LOOPBACK. */
int socket_listen_tcp(const char *address, bool allow_non_loopback, int *ret_fd);
/* mkdir -p with MODE for each missing component. */
int mkdir_parents(const char *path, mode_t mode);
/* Whether listening socket FD is bound to a loopback address. */
int socket_is_loopback(int fd, bool *ret);
