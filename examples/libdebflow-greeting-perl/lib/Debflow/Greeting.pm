package Debflow::Greeting;

# A module with nothing to it but a test suite: debflow's example of a package whose tests come only
# from autodep8 (Testsuite: autopkgtest-pkg-perl), like thousands of Debian's Perl packages.

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = ('greeting');
our $VERSION = '1.0';

sub greeting {
    my ($name) = @_;
    $name = 'world' unless defined $name && length $name;
    return "Hello, $name!";
}

1;

__END__

=head1 NAME

Debflow::Greeting - a greeting, for debflow's autodep8 example

=head1 SYNOPSIS

  use Debflow::Greeting 'greeting';
  print greeting('Debian'), "\n";    # Hello, Debian!

=head1 DESCRIPTION

greeting() returns "Hello, NAME!", or "Hello, world!" without a name.

=cut
