/* services.c -- the table of built-in services. */
#include <string.h>

#include "services.h"

const struct service *const services[] = {
    &service_timestamp, &service_echo,    &service_discard, &service_daytime,
    &service_time,      &service_chargen, &service_chat,    NULL,
};

const struct service *service_find(const char *name)
{
    for (size_t i = 0; services[i] != NULL; i++)
        if (strcmp(services[i]->name, name) == 0)
            return services[i];
    return NULL;
}

bool service_has_stream(const struct service *svc)
{
    return svc->handler->on_open != NULL || svc->handler->on_read != NULL ||
           svc->handler->on_close != NULL;
}

bool service_has_dgram(const struct service *svc)
{
    return svc->handler->on_datagram != NULL;
}
