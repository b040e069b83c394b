/* check_epmd.c: EPMD message encoding and decoding (erl_dist_protocol,
 * "EPMD Protocol"), byte for byte. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include <sys/socket.h>

#include <uv.h>

#include "cnode/cnode_int.h"
#include "cnode/epmd.h"
#include "term/mem.h"

START_TEST(alive2_req_bytes_match_spec)
{
    cbuf_t b;
    cbuf_init(&b);
    ck_assert_int_eq(epmd_encode_alive2(&b, "etsd", 0x1234, EPMD_NODE_HIDDEN), 0);
    static const uint8_t want[] = {
        0, 17,          /* length */
        120,            /* ALIVE2_REQ */
        0x12, 0x34,     /* port */
        72,             /* hidden node */
        0,              /* protocol tcp/ipv4 */
        0, 6, 0, 6,     /* highest, lowest version */
        0, 4, 'e', 't', 's', 'd',
        0, 0};          /* no extra */
    ck_assert_uint_eq(b.len, sizeof want);
    ck_assert_mem_eq(b.data, want, sizeof want);
    cbuf_release(&b);
}
END_TEST

START_TEST(alive2_req_empty_name_returns_einval)
{
    cbuf_t b;
    cbuf_init(&b);
    ck_assert_int_eq(epmd_encode_alive2(&b, "", 1, EPMD_NODE_HIDDEN), -EINVAL);
    ck_assert_uint_eq(b.len, 0);
    cbuf_release(&b);
}
END_TEST

START_TEST(alive2_x_resp_decodes_32bit_creation)
{
    static const uint8_t m[] = {118, 0, 0x6b, 0x0b, 0x0c, 0x0d};
    size_t used = 0;
    int result = -1;
    uint32_t creation = 0;
    for (size_t n = 0; n < sizeof m; n++)
        ck_assert_int_eq(epmd_decode_alive2_resp(m, n, &used, &result, &creation), 0);
    ck_assert_int_eq(epmd_decode_alive2_resp(m, sizeof m, &used, &result, &creation), 1);
    ck_assert_uint_eq(used, 6);
    ck_assert_int_eq(result, 0);
    ck_assert_uint_eq(creation, 0x6b0b0c0d);
}
END_TEST

START_TEST(alive2_resp_decodes_16bit_creation)
{
    static const uint8_t m[] = {121, 0, 0x00, 0x03};
    size_t used = 0;
    int result = -1;
    uint32_t creation = 0;
    ck_assert_int_eq(epmd_decode_alive2_resp(m, sizeof m, &used, &result, &creation), 1);
    ck_assert_uint_eq(creation, 3);
    ck_assert_uint_eq(used, 4);
}
END_TEST

START_TEST(alive2_resp_refusal_reports_result)
{
    static const uint8_t m[] = {118, 1, 0, 0, 0, 0};
    size_t used;
    int result = 0;
    uint32_t creation;
    ck_assert_int_eq(epmd_decode_alive2_resp(m, sizeof m, &used, &result, &creation), 1);
    ck_assert_int_eq(result, 1);
}
END_TEST

START_TEST(alive2_resp_garbage_returns_eproto)
{
    static const uint8_t m[] = {'H', 'T', 'T', 'P'};
    size_t used;
    int result;
    uint32_t creation;
    ck_assert_int_eq(epmd_decode_alive2_resp(m, sizeof m, &used, &result, &creation), -EPROTO);
}
END_TEST

START_TEST(port2_req_bytes_match_spec)
{
    cbuf_t b;
    cbuf_init(&b);
    ck_assert_int_eq(epmd_encode_port2(&b, "foo"), 0);
    static const uint8_t want[] = {0, 4, 122, 'f', 'o', 'o'};
    ck_assert_uint_eq(b.len, sizeof want);
    ck_assert_mem_eq(b.data, want, sizeof want);
    cbuf_release(&b);
}
END_TEST

START_TEST(port2_resp_decodes_at_every_length)
{
    static const uint8_t m[] = {119, 0, 0x9c, 0x40, 77, 0, 0, 6, 0, 5, 0, 3, 'f', 'o', 'o',
                                0, 2, 'x', 'y'};
    epmd_port_info_t info;
    for (size_t n = 0; n < sizeof m; n++)
        ck_assert_int_eq(epmd_decode_port2_resp(m, n, &info), 0);
    ck_assert_int_eq(epmd_decode_port2_resp(m, sizeof m, &info), 1);
    ck_assert_int_eq(info.result, 0);
    ck_assert_uint_eq(info.port, 40000);
    ck_assert_int_eq(info.node_type, 77);
    ck_assert_uint_eq(info.high, 6);
    ck_assert_uint_eq(info.low, 5);
    ck_assert_str_eq(info.name, "foo");
}
END_TEST

START_TEST(port2_resp_not_found_is_complete_after_two_bytes)
{
    static const uint8_t m[] = {119, 1};
    epmd_port_info_t info;
    ck_assert_int_eq(epmd_decode_port2_resp(m, sizeof m, &info), 1);
    ck_assert_int_eq(info.result, 1);
}
END_TEST

START_TEST(port2_resp_overlong_name_returns_eproto)
{
    static const uint8_t m[] = {119, 0, 0, 1, 77, 0, 0, 6, 0, 6, 0xff, 0xff};
    epmd_port_info_t info;
    ck_assert_int_eq(epmd_decode_port2_resp(m, sizeof m, &info), -EPROTO);
}
END_TEST

START_TEST(names_req_bytes_match_spec)
{
    cbuf_t b;
    cbuf_init(&b);
    ck_assert_int_eq(epmd_encode_names(&b), 0);
    static const uint8_t want[] = {0, 1, 110};
    ck_assert_mem_eq(b.data, want, 3);
    cbuf_release(&b);
}
END_TEST

static int names_seen;
static void names_cb(const char *name, int port, void *data)
{
    (void)data;
    if (names_seen == 0) {
        ck_assert_str_eq(name, "a");
        ck_assert_int_eq(port, 1234);
    } else {
        ck_assert_str_eq(name, "bee");
        ck_assert_int_eq(port, 65535);
    }
    names_seen++;
}

START_TEST(names_resp_lists_every_node)
{
    static const char m[] = "\0\0\x11\x11name a at port 1234\nbad line\nname bee at port 65535\n";
    names_seen = 0;
    ck_assert_int_eq(epmd_decode_names(m, sizeof m - 1, names_cb, NULL), 0);
    ck_assert_int_eq(names_seen, 2);
    ck_assert_int_eq(epmd_decode_names(m, 3, names_cb, NULL), -EPROTO);
}
END_TEST

START_TEST(split_name_accepts_alive_at_host_only)
{
    char a[HS_NAME_MAX], h[HS_NAME_MAX];
    ck_assert_int_eq(node_split_name("etsd@127.0.0.1", a, h), 0);
    ck_assert_str_eq(a, "etsd");
    ck_assert_str_eq(h, "127.0.0.1");
    ck_assert_int_eq(node_split_name("etsd", a, h), -EINVAL);
    ck_assert_int_eq(node_split_name("@h", a, h), -EINVAL);
    ck_assert_int_eq(node_split_name("a@", a, h), -EINVAL);
    ck_assert_int_eq(node_split_name("a@b@c", a, h), -EINVAL);
}
END_TEST

START_TEST(split_name_keeps_ipv6_literal_hosts_whole)
{
    char a[HS_NAME_MAX], h[HS_NAME_MAX];
    ck_assert_int_eq(node_split_name("x@::1", a, h), 0);
    ck_assert_str_eq(a, "x");
    ck_assert_str_eq(h, "::1");
    ck_assert_int_eq(node_split_name("app@fdaa:0:1::3", a, h), 0);
    ck_assert_str_eq(a, "app");
    ck_assert_str_eq(h, "fdaa:0:1::3");
}
END_TEST

/* inet_tcp_dist:splitnode/3, checked against erl: net_kernel:connect_node/1
 * says "Hostname localhost is illegal" for a long name without a dot. */
static const struct host_case {
    int id;
    const char *host;
    int longnames, family, rc;
} host_cases[] = {
    {1, "127.0.0.1", 1, AF_INET, 0},
    {2, "app.example.com", 1, AF_INET, 0},
    {3, "localhost", 1, AF_INET, -EINVAL},
    {4, "localhost", 1, AF_INET6, -EINVAL},
    {5, "::1", 1, AF_INET6, 0},
    {6, "fdaa:0:1::3", 1, AF_INET6, 0},
    {7, "::1", 1, AF_INET, -EINVAL},
    {8, "127.0.0.1", 1, AF_INET6, 0},   /* a dot: a name as far as splitnode goes */
    {9, "fdaa::zz", 1, AF_INET6, -EINVAL},
    {10, "myhost", 0, AF_INET, 0},
    {11, "myhost.example.com", 0, AF_INET, -EINVAL},
    {12, "::1", 0, AF_INET6, 0},
    {13, "", 1, AF_INET, -EINVAL},
};

START_TEST(check_host_follows_splitnode_rules)
{
    const struct host_case *k = &host_cases[_i];
    ck_assert_msg(epmd_check_host(k->host, k->longnames, k->family) == k->rc, "case %d (%s)",
                  k->id, k->host);
}
END_TEST

static void never_port_cb(int status, uint16_t port, const struct sockaddr *addr, void *data)
{
    (void)status;
    (void)port;
    (void)addr;
    *(int *)data = 1;
}

START_TEST(port_please_with_another_family_returns_eafnosupport)
{
    uv_loop_t loop;
    int called = 0;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(epmd_port_please(&loop, "::1", "x", AF_UNIX, never_port_cb, &called),
                     -EAFNOSUPPORT);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(called, 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(encode_allocation_failure_returns_enomem_and_keeps_buffer)
{
    cbuf_t b;
    cbuf_init(&b);
    mem_fail_after(1);
    ck_assert_int_eq(epmd_encode_alive2(&b, "etsd", 1, EPMD_NODE_HIDDEN), -ENOMEM);
    ck_assert_int_eq(epmd_encode_port2(&b, "etsd"), -ENOMEM);
    ck_assert_int_eq(epmd_encode_names(&b), -ENOMEM);
    mem_fail_after(0);
    ck_assert_uint_eq(b.len, 0);
    cbuf_release(&b);
}
END_TEST

Suite *epmd_suite(void)
{
    Suite *s = suite_create("epmd");
    TCase *t = tcase_create("alive2");
    tcase_add_test(t, alive2_req_bytes_match_spec);
    tcase_add_test(t, split_name_keeps_ipv6_literal_hosts_whole);
    tcase_add_loop_test(t, check_host_follows_splitnode_rules, 0,
                        (int)(sizeof host_cases / sizeof host_cases[0]));
    tcase_add_test(t, port_please_with_another_family_returns_eafnosupport);
    tcase_add_test(t, alive2_req_empty_name_returns_einval);
    tcase_add_test(t, alive2_x_resp_decodes_32bit_creation);
    tcase_add_test(t, alive2_resp_decodes_16bit_creation);
    tcase_add_test(t, alive2_resp_refusal_reports_result);
    tcase_add_test(t, alive2_resp_garbage_returns_eproto);
    tcase_add_test(t, encode_allocation_failure_returns_enomem_and_keeps_buffer);
    suite_add_tcase(s, t);
    t = tcase_create("port_please2");
    tcase_add_test(t, port2_req_bytes_match_spec);
    tcase_add_test(t, port2_resp_decodes_at_every_length);
    tcase_add_test(t, port2_resp_not_found_is_complete_after_two_bytes);
    tcase_add_test(t, port2_resp_overlong_name_returns_eproto);
    suite_add_tcase(s, t);
    t = tcase_create("names");
    tcase_add_test(t, names_req_bytes_match_spec);
    tcase_add_test(t, names_resp_lists_every_node);
    tcase_add_test(t, split_name_accepts_alive_at_host_only);
    suite_add_tcase(s, t);
    return s;
}
