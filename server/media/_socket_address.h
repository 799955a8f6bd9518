/*
 * A socket address as Python's socket module gives it ((host, port) for IPv4, (host,
 * port, flowinfo, scope_id) for IPv6): for the compiled ingest, which hands aioice
 * its datagrams' senders, and the compiled fan-out, which hands asyncio a copy it
 * could not send itself.
 */
#ifndef YITANG_SOCKET_ADDRESS_H
#define YITANG_SOCKET_ADDRESS_H

#include <Python.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static inline PyObject *
address_tuple(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(a->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siIk)", host, ntohs(a->sin6_port), ntohl(a->sin6_flowinfo),
                             (unsigned long)a->sin6_scope_id);
    }
    PyErr_SetString(PyExc_OSError, "unexpected address family");
    return NULL;
}

#endif
