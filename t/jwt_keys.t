#!/usr/bin/perl

# RS256 and ES256 deployments (keys made with openssl in the temp dir):
# login signs with that algorithm, its tokens and tokens crafted with the
# private key work; the classic algorithm confusion (an HS256 token whose
# HMAC secret is the public key PEM) and every other algorithm are refused.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MOM::Test;
use MOM::Test::JWT qw(make_jwt jwt_parts);

our $TODO = MOM::Test->todo;

for my $alg (qw(RS256 ES256)) {
    my $t = MOM::Test->new(jwt_alg => $alg);
    $t->start;
    my $now = time;
    my %good = (sub => 'alice', iat => $now, exp => $now + 300);

    my $tok = $t->user_token('alice');
    ok($tok, "$alg: login");
    my ($h, $c, $sig) = jwt_parts($tok // '');
    is($h && $h->{alg}, $alg, "$alg: login token header alg");
    is($c && $c->{sub}, 'alice', "$alg: login token sub");
    is(length($sig // ''), $alg eq 'ES256' ? 64 : 256,
       "$alg: signature size (JWS form)");
    my $r = $t->get('/auth/users', token => $tok);
    is($r->{status}, 200, "$alg: login token accepted");
    $r = $t->post('/messages/topics', {name => "t$alg"}, token => $tok);
    is($r->{status}, 200, "$alg: login token creates a topic");

    $r = $t->get('/auth/users', token => $t->jwt(\%good));
    is($r->{status}, 200, "$alg: token crafted with the private key works");

    my $pem = MOM::Test::read_file($t->jwt_public_key);
    (my $pem_trim = $pem) =~ s/\n\z//;
    my %bad = (
        'HS256 signed with the public key PEM'
            => make_jwt('HS256', $pem, \%good),
        'HS256 signed with the PEM minus newline'
            => make_jwt('HS256', $pem_trim, \%good),
        'HS256 with the PEM, header claims ' . $alg
            => make_jwt('HS256', $pem, \%good, {alg => $alg}),
        'alg none' => make_jwt('none', undef, \%good),
        "alg none, header says $alg"
            => make_jwt('none', undef, \%good, {alg => $alg}),
        'expired' => $t->jwt({%good, exp => $now - 5}),
        'no exp' => $t->jwt({sub => 'alice', iat => $now}),
        'no sub' => $t->jwt({iat => $now, exp => $now + 300}),
    );
    # Signed by a key of the same kind that is not the deployment's.
    my $stranger = MOM::Test->new(jwt_alg => $alg);
    $bad{'signed by another key'} = $stranger->jwt(\%good);
    # The other asymmetric algorithm, validly signed with its own key.
    my $otheralg = $alg eq 'RS256' ? 'ES256' : 'RS256';
    my $o = MOM::Test->new(jwt_alg => $otheralg);
    $bad{"$otheralg token"} = $o->jwt(\%good);

    for my $name (sort keys %bad) {
        $r = $t->get('/auth/users', token => $bad{$name});
        is($r->{status}, 401, "$alg: $name -> 401");
        ok($r->{json} && $r->{json}{detail}, "$alg: $name -> JSON detail");
    }

    # Tampered payload on a valid asymmetric token.
    my ($hb, undef, $sb) = split /\./, $tok // '..';
    my $evil = MOM::Test::JWT::b64url(
        MOM::Test::JSON()->encode({%good, sub => 'root'}));
    $r = $t->get('/auth/users', token => "$hb.$evil.$sb");
    is($r->{status}, 401, "$alg: tampered payload -> 401");

    $t->check_logs;
    $t->stop_all;
}

done_testing;
