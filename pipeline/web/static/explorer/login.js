// /ui/login: the form posts the token to the server, which answers with a session cookie and
// sends the browser back where it was going (?next=, checked by the server too).
const params = new URLSearchParams(location.search);
const next = params.get('next');
if (next && next.startsWith('/ui/')) document.getElementById('next').value = next;
if (params.get('failed')) {
  document.getElementById('failed').hidden = false;
  document.getElementById('token').focus();
}
