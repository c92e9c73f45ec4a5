/*
 * Shared declarations of the MOM nginx module.
 */
#ifndef _NGX_HTTP_MOM_H_INCLUDED_
#define _NGX_HTTP_MOM_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

extern ngx_module_t  ngx_http_mom_module;

#endif /* _NGX_HTTP_MOM_H_INCLUDED_ */
