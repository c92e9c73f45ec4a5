#!/usr/bin/perl

# The module reads the common body, an object of plain strings
# ({"content":"..."}), with a scanner of its own and leaves every other
# body to jansson. Both must mean the same: the same stored content (last
# duplicate key wins, content before data, UTF-8 kept as is), the same 422
# for anything that is not valid JSON (bad UTF-8, control characters,
# trailing bytes...), and the same detail for a missing field.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MOM::Test;

my $t = MOM::Test->new;
our $TODO = $t->todo;
$t->start;

my $tok = $t->user_token('alice');
ok($tok, 'logged in');

my $r = $t->post('/messages/topics', {name => 'p'}, token => $tok);
is($r->{status}, 200, 'topic created');

my $path = '/messages/messages/topic/p';
my $json = MOM::Test::JSON();

# body => the content history must show (raw UTF-8 bytes in, characters out)
my @accepted = (
    ['{"content":"a","content":"b"}', 'b'],
    ['{"data":"d","content":"c"}', 'c'],
    ['{"content":"c","data":"d"}', 'c'],
    ['{"data":"d"}', 'd'],
    ['{"content":"x","other":"y"}', 'x'],
    [" \t\r\n{ \"content\" : \"sp\" ,\n\"z\":\"\" } \n", 'sp'],
    ["{\"content\":\"\xc3\xa9\xe2\x9c\x93\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}",
     "\x{e9}\x{2713}\x{1f600}\x{10ffff}"],
    ["{\"content\":\"a/b ~\x7f\"}", "a/b ~\x7f"],
    ['{"content":""}', ''],
    ['{"content":"q\"uote"}', 'q"uote'],
    ['{"content":{"k":"v"}}', {k => 'v'}],
    ['{"content":"x","content":1}', 1],
    ['{"content":1,"content":"x"}', 'x'],
    ['{"":"","content":"empty key"}', 'empty key'],
);

for my $case (@accepted) {
    $r = $t->post($path, $case->[0], token => $tok);
    is($r->{status}, 200, 'accepted: ' . $json->encode($case->[0]))
        or diag($r->{content});
}

$r = $t->get("$path?limit=1000");
is_deeply([map { $_->{content} } @{$r->{json}{messages} // []}],
          [map { $_->[1] } @accepted], 'stored contents as jansson reads them');
my $stored = @{$r->{json}{messages} // []};

my @rejected = (
    "{\"content\":\"a\xff\"}",
    "{\"content\":\"\xc0\x80\"}",
    "{\"content\":\"\xc1\xbf\"}",
    "{\"content\":\"\xe0\x80\x80\"}",
    "{\"content\":\"\xed\xa0\x80\"}",
    "{\"content\":\"\xf4\x90\x80\x80\"}",
    "{\"content\":\"\xf5\x80\x80\x80\"}",
    "{\"content\":\"\xe2\x9c\"}",
    "{\"content\":\"\x80\"}",
    "{\"content\":\"a\x01\"}",
    "{\"content\":\"a\tb\"}",
    "{\"content\":\"a\nb\"}",
    "{\"content\":\"x\"\x00}",
    "{\"content\":\"x\"}\x00",
    '{"content":"x",}',
    '{"content":"x"}x',
    '{"content":"x"}{}',
    '{"content":"x"}}',
    '{"content" "x"}',
    '{"content":"x" "data":"y"}',
    '{"content":"x"',
    '{"content":"x',
    '{"content":x"}',
    '{,"content":"x"}',
    "{\"content\":\"x\"}\f",
    "\xef\xbb\xbf{\"content\":\"x\"}",
    '["content","x"]',
    '"content"',
);

for my $body (@rejected) {
    $r = $t->post($path, $body, token => $tok);
    is($r->{status}, 422, 'rejected: ' . $json->encode($body));
    like($r->{json}{detail} // '', qr/^Malformed JSON|must be a JSON object/,
         'jansson\'s verdict');
}

$r = $t->get("$path?limit=1000");
is(scalar @{$r->{json}{messages} // []}, $stored,
   'nothing stored by rejected bodies');

# A missing field reads the same whichever parser saw the body.

sub detail_of {
    my ($p, $body, %o) = @_;
    my $res = $t->post($p, $body, %o);
    return "$res->{status} " . ($res->{json}{detail} // '');
}

is(detail_of($path, '{"other":"x"}', token => $tok),
   "422 Field 'content' (or 'data') is required", 'plain: content missing');
is(detail_of($path, '{"other":1}', token => $tok),
   "422 Field 'content' (or 'data') is required", 'jansson: content missing');

for my $route ('/auth/register', '/auth/login') {
    is(detail_of($route, '{"username":"u1"}'),
       "422 Field 'password' is required", "$route plain: no password");
    is(detail_of($route, '{"username":"u1","x":1}'),
       "422 Field 'password' is required", "$route jansson: no password");
    is(detail_of($route, '{"password":"p"}'),
       "422 Field 'username' is required", "$route plain: no username");
    is(detail_of($route, '{"username":"bad name","password":"p"}'),
       '422 Invalid username: use 1 to 128 of A-Z a-z 0-9 . _ -',
       "$route plain: bad username");
    is(detail_of($route, '{"username":"u1","password":""}'),
       "422 Field 'password' must be 1 to 1024 bytes",
       "$route plain: empty password");
}

is(detail_of('/messages/topics', '{"name":"bad name"}', token => $tok),
   '422 Invalid name: use 1 to 128 of A-Z a-z 0-9 . _ -', 'plain: bad name');
is(detail_of('/messages/topics', '{"title":"t"}', token => $tok),
   "422 Field 'name' is required", 'plain: name missing');

$r = $t->post('/messages/topics', '{"name":"t1","name":"t2"}', token => $tok);
is($r->{status}, 200, 'duplicate name key accepted');
is($r->{json}{name}, 't2', 'the last name wins');

$r = $t->post('/auth/register', '{"password":"x","username":"bob",'
              . '"username":"carol"}');
is($r->{status}, 200, 'register with a duplicate username key');
$r = $t->get('/auth/users', token => $tok);
is_deeply([sort @{$r->{json}{users} // []}], [qw(alice carol)],
          'the last username wins; nobody else registered');

$t->check_logs;
done_testing;
