// The credmgr console's only script: Copy buttons (`data-copy` names the input to copy).
// The pages work without it; the login link can be selected and copied by hand.
document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    button.textContent = 'Copied';
  } catch {
    // Clipboard access refused (plain http on another host): the text stays selected.
    button.textContent = 'Press Ctrl-C';
  }
});
